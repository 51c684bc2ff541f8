/* loadgen: a WebSocket load generator, one thread on epoll: echo, RPC and
   room fan-out.

   build/loadgen --url ws://127.0.0.1:PORT/ --conns N --size BYTES --seconds S
                 [--pipeline K] [--text]
   build/loadgen --url ws://127.0.0.1:PORT/ --conns N --idle [--seconds S]
   build/loadgen --url ws://127.0.0.1:PORT/ --rpc [--conns N] [--pipeline K]
                 [--seconds S] [--route NAME] [--payload JSON]
   build/loadgen --url ws://127.0.0.1:PORT/ --fanout [--conns N] [--seconds S]
                 [--size TEXT_BYTES]

   Opens N connections (each handshake verified: status 101, the accept key),
   then keeps K messages in flight on each: every frame it sends is masked
   with a fresh key, and every byte echoed back is checked against a pattern
   derived from the connection number, the message's sequence number and the
   byte's offset. Prints messages/s, MB/s (payload, each way), round-trip
   p50/p99 (from the wakeup that sent a message to the one that got its
   echo), its own CPU use and the error count; exits 1 on any error. The
   last line, "RESULT key=value ...", is for scripts.

   Why it is not the bottleneck: edge-triggered epoll (no re-polling, no
   epoll_ctl after connect), each socket read until a short read (a short
   read has drained it: the next byte raises a new edge, so the read that
   would return EAGAIN is saved), every frame a connection owes generated
   in place and sent with one write per connection per wakeup, pattern
   generation, masking and checking eight bytes at a time, one clock read
   per wakeup.

   --rpc speaks the Zocket JSON protocol: each connection sends
   {"type":"bench.echo","payload":{"n":123},"rpcId":"<k>"} (k counts up per
   connection) and waits for {"type":"__rpc_res",...,"rpcId":"<k>"}, K calls
   in flight (--pipeline, default 1). Each answer must be a whole text frame
   with type __rpc_res, the rpcId of the oldest call outstanding on that
   connection (a server answers a connection's synchronous calls in order)
   and the payload sent. Messages/s are calls/s; the round trip is a call's.

   --fanout measures room fan-out. Every connection first calls room.join
   ({"type":"room.join","rpcId":"j"}) and waits for its answer. Then rounds:
   each of the N connections sends one event
   {"type":"room.send","payload":{"from":"c0042","text":"xx..."}} (the text
   --size bytes, default 16), the server delivers each to all N members
   (the sender too), and the round ends when every connection has received
   exactly N messages; the next round starts then. Deliveries/s = rounds x
   N^2 / time, and the round time (first send to last delivery) gives
   p50/p99. To keep up with a server writing millions of messages a second,
   this mode does not buffer or parse what it reads: one 1 MiB buffer for
   every read, only WebSocket frame headers decoded (a header split across
   reads is carried in the connection), payloads skipped. Checks: every
   message a whole text frame, all of one length (the first one's: the
   senders' payloads are all of one length), at most N per connection per
   round; in the first 3 rounds every message wholly inside one read is
   checked to contain "room.message" and the text sent.

   --idle opens N connections, completes the handshakes, prints "ready N"
   and holds them without traffic (answering pings) until SIGINT/SIGTERM or
   --seconds (default 600) pass: the memory test. The handshake code is
   zocket.h's (request, response parser, verification); the frame code here
   is its own. */
#define _GNU_SOURCE
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define MAX_PENDING 200      /* connects and handshakes under way at once */
#define HIST_BUCKETS 2048
#define GOLD 0x9E3779B97F4A7C15ull

enum { C_NEW, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_DEAD }; /* C_NEW: not started yet */

typedef struct conn {
    int fd, id, state;
    unsigned char *rbuf;
    size_t rlen, rcap;
    unsigned char *wbuf;
    size_t wlen, woff, wcap;
    uint64_t sent_seq, recv_seq;
    uint64_t *sent_at;       /* send time of message seq, at [seq % pipeline] */
    size_t msg_off;          /* bytes of the current (fragmented) message checked */
    int in_fragment, frag_op;
    size_t hs_seen;
    unsigned char key[16];   /* the handshake nonce */
    /* --fanout: where this connection is in the stream of frames */
    uint64_t skip;           /* payload bytes of the current frame still to come */
    int got;                 /* messages received this round */
    int joined;
    size_t hhave;            /* bytes of a split header (or control frame) in hdr */
    unsigned char hdr[14 + 125];
} conn;

enum { M_ECHO, M_RPC, M_FANOUT };

static struct {
    char host[64], hostport[80], path[256];
    int port;
    int conns, pipeline, text, idle, mode;
    size_t size;
    double seconds;
    const char *route, *payload; /* --rpc */
} cfg;

static int epfd;
static size_t read_chunk = 65536; /* the least room a read is given; 4 KiB when idle */
static conn *conns;
static uint64_t now_ns, rng_state = 0x243F6A8885A308D3ull;
static uint64_t hist[HIST_BUCKETS];
static uint64_t total_msgs, window_msgs, errors, rtt_count;
static int stopping_sends, open_count, pending_count;
static volatile sig_atomic_t got_signal;
static char first_error[160];

static uint64_t clock_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CPU time this process used, in seconds. */
static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static uint64_t rng_next(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The payload of message seq on connection id: little-endian words
   block[j] ^ key, where block is random words made once and key mixes id
   and seq (so every message and connection differs, and a byte echoed
   from the wrong message or offset shows); mapped into printable ASCII for
   text messages. No multiply per word: generating and checking cost about
   a cycle per eight bytes. */
static uint64_t *block; /* cfg.size / 8 + 1 random words */

static uint64_t pattern_key(int id, uint64_t seq) {
    return mix64(((uint64_t)(unsigned)id << 40) ^ seq ^ GOLD);
}

static uint64_t pattern_word(uint64_t key, size_t j) {
    uint64_t w = block[j] ^ key;
    if (cfg.text) w = (w & 0x3F3F3F3F3F3F3F3Full) + 0x2020202020202020ull;
    return w;
}

static unsigned char pattern_byte(uint64_t key, size_t i) {
    return (unsigned char)(pattern_word(key, i / 8) >> (8 * (i % 8)));
}

static uint64_t load_le64(const unsigned char *p) {
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

static void store_le64(unsigned char *p, uint64_t w) {
    p[0] = (unsigned char)w;
    p[1] = (unsigned char)(w >> 8);
    p[2] = (unsigned char)(w >> 16);
    p[3] = (unsigned char)(w >> 24);
    p[4] = (unsigned char)(w >> 32);
    p[5] = (unsigned char)(w >> 40);
    p[6] = (unsigned char)(w >> 48);
    p[7] = (unsigned char)(w >> 56);
}

/* 1 if p[0..len) is bytes off..off+len of the message's pattern. */
static int pattern_check(uint64_t key, size_t off, const unsigned char *p, size_t len) {
    uint64_t diff = 0;
    size_t i = 0;
    while (i < len && (off + i) % 8) {
        if (p[i] != pattern_byte(key, off + i)) return 0;
        i++;
    }
    for (; i + 8 <= len; i += 8) diff |= load_le64(p + i) ^ pattern_word(key, (off + i) / 8);
    for (; i < len; i++)
        if (p[i] != pattern_byte(key, off + i)) return 0;
    return diff == 0;
}

/* ---- latency histogram: 32 sub-buckets per power of two (about 3%) ---- */

static int hist_index(uint64_t v) {
    int e;
    if (v < 64) return (int)v;
    e = 63 - __builtin_clzll(v);
    return 64 + (e - 6) * 32 + (int)((v >> (e - 5)) & 31);
}

static uint64_t hist_value(int idx) {
    int e, m;
    if (idx < 64) return (uint64_t)idx;
    e = (idx - 64) / 32 + 6;
    m = (idx - 64) % 32;
    return ((uint64_t)(32 + m) << (e - 5)) + ((uint64_t)1 << (e - 5)) / 2;
}

static double hist_quantile(double q) {
    uint64_t want, seen = 0;
    int i;
    if (!rtt_count) return 0;
    want = (uint64_t)(q * (double)rtt_count);
    if (want >= rtt_count) want = rtt_count - 1;
    for (i = 0; i < HIST_BUCKETS; i++) {
        seen += hist[i];
        if (seen > want) return (double)hist_value(i);
    }
    return 0;
}

/* ---- connections ---- */

static void fail(conn *c, const char *why) {
    errors++;
    if (!first_error[0])
        snprintf(first_error, sizeof first_error, "connection %d: %s", c->id, why);
    if (c->state == C_OPEN) open_count--;
    if (c->state == C_CONNECTING || c->state == C_HANDSHAKE) pending_count--;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->state = C_DEAD;
}

static unsigned char *wbuf_reserve(conn *c, size_t n) {
    if (c->woff == c->wlen) c->woff = c->wlen = 0;
    if (c->wcap - c->wlen < n) {
        size_t cap = c->wcap ? c->wcap : 256;
        unsigned char *p;
        if (c->woff) {
            memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
            c->wlen -= c->woff;
            c->woff = 0;
        }
        while (cap - c->wlen < n) cap *= 2;
        if (cap != c->wcap) {
            p = (unsigned char *)realloc(c->wbuf, cap);
            if (!p) {
                fprintf(stderr, "loadgen: out of memory\n");
                exit(1);
            }
            c->wbuf = p;
            c->wcap = cap;
        }
    }
    return c->wbuf + c->wlen;
}

/* Writes a masked frame header (2 to 14 bytes) and returns its size. */
static size_t frame_header(unsigned char *out, int opcode, size_t len, const unsigned char mask[4]) {
    size_t n = 2;
    out[0] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        out[1] = (unsigned char)(0x80 | len);
    } else if (len < 65536) {
        out[1] = 0x80 | 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        n = 4;
    } else {
        int k;
        out[1] = 0x80 | 127;
        for (k = 0; k < 8; k++) out[2 + k] = (unsigned char)((uint64_t)len >> (56 - 8 * k));
        n = 10;
    }
    memcpy(out + n, mask, 4);
    return n + 4;
}

/* Queues one whole frame, masked with a fresh key. */
static void send_frame(conn *c, int opcode, const void *data, size_t len) {
    const unsigned char *payload = (const unsigned char *)data;
    uint64_t m = rng_next();
    unsigned char mask[4], *p;
    size_t i, h;
    mask[0] = (unsigned char)m;
    mask[1] = (unsigned char)(m >> 8);
    mask[2] = (unsigned char)(m >> 16);
    mask[3] = (unsigned char)(m >> 24);
    p = wbuf_reserve(c, len + 14);
    h = frame_header(p, opcode, len, mask);
    for (i = 0; i < len; i++) p[h + i] = (unsigned char)(payload[i] ^ mask[i % 4]);
    c->wlen += h + len;
}

/* ---- --rpc: calls in the Zocket JSON protocol ---- */

static char rpc_prefix[1024]; /* {"type":"<route>","payload":<payload>,"rpcId":" */
static size_t rpc_prefix_len;

static size_t fmt_u64(char *out, uint64_t v) {
    char tmp[24];
    size_t n = 0, i;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    return n;
}

static void send_rpc(conn *c) {
    uint64_t seq = c->sent_seq++;
    char msg[sizeof rpc_prefix + 32];
    size_t n = rpc_prefix_len;
    memcpy(msg, rpc_prefix, n);
    n += fmt_u64(msg + n, seq);
    msg[n++] = '"';
    msg[n++] = '}';
    send_frame(c, 1, msg, n);
    c->sent_at[seq % (uint64_t)cfg.pipeline] = now_ns;
}

/* A failure that quotes the start of the message that caused it. */
static void fail_quoting(conn *c, const char *why, const unsigned char *msg, size_t len) {
    char text[160];
    snprintf(text, sizeof text, "%s: %.*s", why, (int)(len < 80 ? len : 80), (const char *)msg);
    fail(c, text);
}

/* Queues the next message of c, masked, generated straight into place. */
static void send_message(conn *c) {
    uint64_t seq, key, m, mask64;
    unsigned char mask[4], *p;
    size_t i, j, h;
    if (cfg.mode == M_RPC) {
        send_rpc(c);
        return;
    }
    seq = c->sent_seq++;
    key = pattern_key(c->id, seq);
    m = rng_next();
    mask[0] = (unsigned char)m;
    mask[1] = (unsigned char)(m >> 8);
    mask[2] = (unsigned char)(m >> 16);
    mask[3] = (unsigned char)(m >> 24);
    mask64 = (m & 0xFFFFFFFFull) | (m & 0xFFFFFFFFull) << 32;
    p = wbuf_reserve(c, cfg.size + 14);
    h = frame_header(p, cfg.text ? 1 : 2, cfg.size, mask);
    p += h;
    for (i = 0, j = 0; i + 8 <= cfg.size; i += 8, j++) store_le64(p + i, pattern_word(key, j) ^ mask64);
    for (; i < cfg.size; i++) p[i] = (unsigned char)(pattern_byte(key, i) ^ mask[i % 4]);
    c->wlen += h + cfg.size;
    c->sent_at[seq % (uint64_t)cfg.pipeline] = now_ns;
}

/* A control frame (pong, close) with a payload of at most 125 bytes. */
static void send_control(conn *c, int opcode, const unsigned char *payload, size_t len) {
    send_frame(c, opcode, payload, len);
}

static void flush(conn *c) {
    while (c->state != C_DEAD && c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n > 0) {
            c->woff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        fail(c, "write failed");
        return;
    }
    if (c->state == C_DEAD) return;
    if (c->woff == c->wlen) c->woff = c->wlen = 0;
    /* else: EPOLLOUT (edge-triggered, always registered) says when to go on */
}

static void answered(conn *c);

static void message_done(conn *c, int opcode) {
    if (c->msg_off != cfg.size) {
        fail(c, "echoed message has the wrong length");
        return;
    }
    if (opcode != (cfg.text ? 1 : 2)) {
        fail(c, "echoed message has the wrong type");
        return;
    }
    answered(c);
}

/* The oldest message in flight on c got its answer. */
static void answered(conn *c) {
    uint64_t rtt = now_ns - c->sent_at[c->recv_seq % (uint64_t)cfg.pipeline];
    hist[hist_index(rtt)]++;
    rtt_count++;
    c->recv_seq++;
    c->msg_off = 0;
    total_msgs++;
    if (!stopping_sends) {
        window_msgs++;
        send_message(c);
    }
}

/* --rpc: an answer frame. It must be __rpc_res for the oldest call
   outstanding, with the payload sent. */
static void rpc_answer(conn *c, int op, int fin, const unsigned char *f, size_t len) {
    const unsigned char *p, *end = f + len;
    uint64_t id = 0;
    int digits = 0;
    if (op != 1 || !fin) {
        fail(c, "an answer is not a whole text frame");
        return;
    }
    if (c->recv_seq >= c->sent_seq) {
        fail_quoting(c, "a message with no call outstanding", f, len);
        return;
    }
    p = (const unsigned char *)memmem(f, len, "\"rpcId\":", 8);
    if (!p) {
        fail_quoting(c, "an answer without rpcId", f, len);
        return;
    }
    for (p += 8; p < end && (*p == ' ' || *p == '"'); p++) {}
    for (; p < end && *p >= '0' && *p <= '9'; p++, digits++) id = id * 10 + (uint64_t)(*p - '0');
    if (!digits || id != c->recv_seq) {
        fail_quoting(c, "an answer to another call than the oldest outstanding", f, len);
        return;
    }
    if (!memmem(f, len, "\"__rpc_res\"", 11)) {
        fail_quoting(c, "not __rpc_res", f, len);
        return;
    }
    if (!memmem(f, len, cfg.payload, strlen(cfg.payload))) {
        fail_quoting(c, "the result is not the payload sent", f, len);
        return;
    }
    answered(c);
}

/* Handles every whole frame in c->rbuf; keeps a partial one. */
static void parse_frames(conn *c) {
    size_t pos = 0;
    while (c->state == C_OPEN) {
        unsigned char *f = c->rbuf + pos;
        size_t avail = c->rlen - pos, hlen = 2;
        uint64_t plen;
        int fin, op;
        if (avail < 2) break;
        fin = f[0] & 0x80;
        op = f[0] & 0x0F;
        if (f[0] & 0x70) { fail(c, "RSV bits set"); return; }
        if (f[1] & 0x80) { fail(c, "server frame is masked"); return; }
        plen = f[1] & 0x7F;
        if (plen == 126) {
            hlen = 4;
            if (avail < hlen) break;
            plen = (uint64_t)f[2] << 8 | f[3];
        } else if (plen == 127) {
            int k;
            hlen = 10;
            if (avail < hlen) break;
            plen = 0;
            for (k = 0; k < 8; k++) plen = plen << 8 | f[2 + k];
            if (plen > ((uint64_t)1 << 31)) { fail(c, "frame too large"); return; }
        }
        if (avail < hlen + plen) {
            if (hlen + plen > c->rcap) { /* a frame larger than the buffer: grow it */
                size_t cap = (size_t)(hlen + plen) + read_chunk;
                unsigned char *p;
                if (pos) {
                    memmove(c->rbuf, c->rbuf + pos, avail);
                    c->rlen = avail;
                    pos = 0;
                }
                p = (unsigned char *)realloc(c->rbuf, cap);
                if (!p) { fail(c, "out of memory"); return; }
                c->rbuf = p;
                c->rcap = cap;
            }
            break;
        }
        f += hlen;
        pos += hlen + (size_t)plen;
        if (cfg.mode == M_RPC && op < 8) {
            rpc_answer(c, op, fin, f, (size_t)plen);
            continue;
        }
        switch (op) {
        case 0x1:
        case 0x2:
        case 0x0:
            if (op == 0 ? !c->in_fragment : c->in_fragment) {
                fail(c, "bad fragment sequence");
                return;
            }
            if (c->recv_seq >= c->sent_seq) {
                fail(c, "echo of a message never sent");
                return;
            }
            if (op) c->frag_op = op;
            if (c->msg_off + plen > cfg.size ||
                !pattern_check(pattern_key(c->id, c->recv_seq), c->msg_off, f, (size_t)plen)) {
                fail(c, "echoed bytes differ from those sent");
                return;
            }
            c->msg_off += (size_t)plen;
            c->in_fragment = !fin;
            if (fin) message_done(c, c->frag_op);
            break;
        case 0x9:
            if (plen > 125 || !fin) { fail(c, "bad ping"); return; }
            send_control(c, 0xA, f, (size_t)plen);
            break;
        case 0xA:
            break;
        case 0x8:
            fail(c, "server sent close");
            return;
        default:
            fail(c, "unknown opcode");
            return;
        }
    }
    if (c->state != C_OPEN) return;
    if (pos) {
        memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
        c->rlen -= pos;
    }
}

/* ---- --fanout: rounds of room messages, counted by frame headers ---- */

#define FAN_BUF (1u << 20)
#define FAN_CHECK_ROUNDS 3
static unsigned char *fan_buf;          /* every read lands here */
static int fan_running;                 /* 0: joining; 1: rounds */
static int fan_joined, fan_done, fan_active, fan_finished;
static uint64_t fan_len;                /* payload length of every room message */
static uint64_t fan_rounds, fan_delivered, fan_checked, fan_round_start, fan_t_end, fan_t_last;
static char fan_msg[600];               /* the room.send event; "%04d" at fan_id_at */
static size_t fan_msg_len, fan_id_at;
static char fan_text[300];

static void fan_start_round(void) {
    int i;
    fan_round_start = now_ns;
    for (i = 0; i < cfg.conns; i++) {
        conn *c = &conns[i];
        if (c->state != C_OPEN) continue;
        fan_msg[fan_id_at] = (char)('0' + c->id / 1000 % 10);
        fan_msg[fan_id_at + 1] = (char)('0' + c->id / 100 % 10);
        fan_msg[fan_id_at + 2] = (char)('0' + c->id / 10 % 10);
        fan_msg[fan_id_at + 3] = (char)('0' + c->id % 10);
        send_frame(c, 1, fan_msg, fan_msg_len);
        flush(c);
    }
}

static void fan_round_done(void) {
    uint64_t t = now_ns - fan_round_start;
    int i;
    hist[hist_index(t)]++;
    rtt_count++;
    fan_rounds++;
    fan_done = 0;
    fan_t_last = now_ns;
    for (i = 0; i < cfg.conns; i++) conns[i].got = 0;
    if (!got_signal && now_ns < fan_t_end && !errors) fan_start_round();
    else fan_finished = 1;
}

/* A whole data frame's header was read; payload is its bytes when they are
   all in this read, else NULL. */
static void fan_message(conn *c, int op, int fin, uint64_t plen, const unsigned char *payload) {
    if (op != 1 || !fin) {
        fail(c, "a message is not a whole text frame");
        return;
    }
    if (!fan_running) { /* the answer to room.join */
        if (c->joined) {
            fail(c, "a message before the rounds began");
            return;
        }
        if (payload && !memmem(payload, (size_t)plen, "\"__rpc_res\"", 11)) {
            fail_quoting(c, "room.join was not answered __rpc_res", payload, (size_t)plen);
            return;
        }
        c->joined = 1;
        fan_joined++;
        return;
    }
    if (!fan_len) fan_len = plen;
    if (plen != fan_len) {
        char why[96];
        snprintf(why, sizeof why, "a message of %llu bytes among messages of %llu",
                 (unsigned long long)plen, (unsigned long long)fan_len);
        if (payload) fail_quoting(c, why, payload, (size_t)plen);
        else fail(c, why);
        return;
    }
    if (c->got >= fan_active) {
        fail(c, "more messages in a round than there are senders");
        return;
    }
    if (fan_rounds < FAN_CHECK_ROUNDS && payload) {
        if (!memmem(payload, (size_t)plen, "\"room.message\"", 14) ||
            !memmem(payload, (size_t)plen, fan_text, strlen(fan_text))) {
            fail_quoting(c, "not the room.message expected", payload, (size_t)plen);
            return;
        }
        fan_checked++;
    }
    fan_delivered++;
    if (++c->got == fan_active && ++fan_done == fan_active) fan_round_done();
}

static void fan_control(conn *c, int op, const unsigned char *payload, size_t len) {
    if (op == 0x9) send_control(c, 0xA, payload, len);
    else if (op == 0x8) fail(c, "server sent close");
    else if (op != 0xA) fail(c, "unknown opcode");
}

/* Size of the header starting at h (at least 2 bytes there). */
static size_t fan_header_len(const unsigned char *h) {
    size_t code = h[1] & 0x7Fu;
    return code < 126 ? 2 : code == 126 ? 4 : 10;
}

/* Walks the frames in p[0..n), whatever their boundaries: a header split
   across reads is kept in c->hdr, a payload is skipped (a control frame's
   is kept in c->hdr to answer it). */
static void fan_scan(conn *c, const unsigned char *p, size_t n) {
    size_t i = 0;
    while (i < n && c->state == C_OPEN) {
        const unsigned char *h;
        uint64_t plen;
        size_t hl, avail;
        int op, fin;
        if (c->skip) {
            size_t t = c->skip < n - i ? (size_t)c->skip : n - i;
            if (c->frag_op) { /* a control frame's payload */
                memcpy(c->hdr + c->hhave, p + i, t);
                c->hhave += t;
            }
            i += t;
            c->skip -= t;
            if (!c->skip && c->frag_op) {
                fan_control(c, c->frag_op, c->hdr, c->hhave);
                c->frag_op = 0;
                c->hhave = 0;
            }
            continue;
        }
        avail = n - i;
        if (!c->hhave && avail >= 2 && avail >= fan_header_len(p + i)) {
            h = p + i;
            hl = fan_header_len(h);
            i += hl;
        } else {
            while (i < n && (c->hhave < 2 || c->hhave < fan_header_len(c->hdr))) c->hdr[c->hhave++] = p[i++];
            if (c->hhave < 2 || c->hhave < fan_header_len(c->hdr)) break;
            h = c->hdr;
            hl = c->hhave;
            c->hhave = 0;
        }
        if (h[0] & 0x70) { fail(c, "RSV bits set"); return; }
        if (h[1] & 0x80) { fail(c, "server frame is masked"); return; }
        fin = h[0] & 0x80;
        op = h[0] & 0x0F;
        plen = h[1] & 0x7F;
        if (hl == 4) plen = (uint64_t)h[2] << 8 | h[3];
        else if (hl == 10) {
            int k;
            for (plen = 0, k = 0; k < 8; k++) plen = plen << 8 | h[2 + k];
        }
        avail = n - i;
        if (op >= 8) {
            if (plen > 125 || !fin) { fail(c, "bad control frame"); return; }
            if (avail >= plen) {
                fan_control(c, op, p + i, (size_t)plen);
                i += (size_t)plen;
            } else { /* keep its payload as it comes */
                c->frag_op = op;
                c->skip = plen;
            }
            continue;
        }
        if (avail >= plen) {
            fan_message(c, op, fin, plen, p + i);
            i += (size_t)plen;
        } else {
            fan_message(c, op, fin, plen, NULL);
            c->skip = plen - avail;
            i = n;
        }
    }
}

static void fan_readable(conn *c) {
    for (;;) {
        ssize_t n = recv(c->fd, fan_buf, FAN_BUF, 0);
        if (n > 0) {
            fan_scan(c, fan_buf, (size_t)n);
            if (c->state == C_DEAD) return;
            if ((size_t)n < FAN_BUF) break; /* drained: see on_readable */
            continue;
        }
        if (n == 0) { fail(c, "server closed the connection"); return; }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        fail(c, "read failed");
        return;
    }
    flush(c);
}

static void handshake_response(conn *c) {
    zk_http_response res;
    zk_ws_client_handshake hs;
    const char *why = NULL;
    int n = zk_http_parse_response((const char *)c->rbuf, c->rlen, c->hs_seen, &res, NULL);
    c->hs_seen = c->rlen;
    if (n == ZK_EAGAIN) return;
    if (n < 0) {
        fail(c, res.error ? res.error : "malformed upgrade answer");
        return;
    }
    memset(&hs, 0, sizeof hs);
    hs.host = cfg.hostport;
    hs.path = cfg.path;
    memcpy(hs.key, c->key, 16);
    if (zk_ws_client_verify(&res, &hs, NULL, &why) != ZK_OK) {
        fail(c, why ? why : "upgrade refused");
        return;
    }
    memmove(c->rbuf, c->rbuf + n, c->rlen - (size_t)n);
    c->rlen -= (size_t)n;
    c->state = C_OPEN;
    pending_count--;
    open_count++;
    if (c->rlen && cfg.mode == M_FANOUT) {
        fan_scan(c, c->rbuf, c->rlen);
        c->rlen = 0;
    } else if (c->rlen) {
        parse_frames(c);
    }
}

static void on_readable(conn *c) {
    for (;;) {
        size_t room;
        ssize_t n;
        if (c->rcap - c->rlen < read_chunk / 4 && c->rcap < c->rlen + read_chunk) {
            size_t cap = c->rlen + read_chunk;
            unsigned char *p = (unsigned char *)realloc(c->rbuf, cap);
            if (!p) { fail(c, "out of memory"); return; }
            c->rbuf = p;
            c->rcap = cap;
        }
        room = c->rcap - c->rlen;
        n = recv(c->fd, c->rbuf + c->rlen, room, 0);
        if (n > 0) {
            c->rlen += (size_t)n;
            if (c->state == C_HANDSHAKE) handshake_response(c);
            else parse_frames(c);
            if (c->state == C_DEAD) return;
            /* a short read drained the socket: the next byte to arrive raises
               a new edge (what saves the read that would return EAGAIN) */
            if ((size_t)n < room) break;
            continue;
        }
        if (n == 0) { fail(c, "server closed the connection"); return; }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        fail(c, "read failed");
        return;
    }
    flush(c);
}

static void on_connected(conn *c) {
    int err = 0;
    socklen_t len = sizeof err;
    char req[1024];
    zk_ws_client_handshake hs;
    size_t i;
    int n;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
        fail(c, "connect failed");
        return;
    }
    for (i = 0; i < 16; i++) c->key[i] = (unsigned char)rng_next();
    memset(&hs, 0, sizeof hs);
    hs.host = cfg.hostport;
    hs.path = cfg.path;
    memcpy(hs.key, c->key, 16);
    n = zk_ws_client_request(req, sizeof req, &hs);
    if (n < 0) { fail(c, "cannot write the upgrade request"); return; }
    c->state = C_HANDSHAKE;
    memcpy(wbuf_reserve(c, (size_t)n), req, (size_t)n);
    c->wlen += (size_t)n;
    flush(c);
}

static void start_connect(conn *c) {
    struct sockaddr_in a;
    struct epoll_event ev;
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->state = C_CONNECTING;
    pending_count++;
    if (c->fd < 0) { fail(c, "socket failed (raise ulimit -n)"); return; }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)cfg.port);
    inet_pton(AF_INET, cfg.host, &a.sin_addr);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        fail(c, "connect failed");
        return;
    }
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
    ev.data.ptr = c;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) { fail(c, "epoll_ctl failed"); return; }
}

static void on_event(conn *c, unsigned events) {
    if (c->state == C_DEAD) return;
    if (c->state == C_CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(c);
        return;
    }
    if ((events & EPOLLOUT) && c->state != C_DEAD) flush(c);
    if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && c->state != C_DEAD) {
        if (cfg.mode == M_FANOUT && c->state == C_OPEN) fan_readable(c);
        else on_readable(c);
    }
}

/* Waits at most ms for events and handles them. */
static void poll_once(int ms) {
    struct epoll_event evs[512];
    int n, i;
    n = epoll_wait(epfd, evs, 512, ms);
    now_ns = clock_ns();
    for (i = 0; i < n; i++) on_event((conn *)evs[i].data.ptr, evs[i].events);
}

static void on_signal(int sig) {
    (void)sig;
    got_signal = 1;
}

static int parse_url(const char *url) {
    const char *p, *slash;
    size_t n;
    if (strncmp(url, "ws://", 5) != 0) return -1;
    p = url + 5;
    slash = strchr(p, '/');
    n = slash ? (size_t)(slash - p) : strlen(p);
    if (n == 0 || n >= sizeof cfg.hostport) return -1;
    memcpy(cfg.hostport, p, n);
    cfg.hostport[n] = '\0';
    snprintf(cfg.path, sizeof cfg.path, "%s", slash ? slash : "/");
    {
        char *colon = strrchr(cfg.hostport, ':');
        size_t hn = colon ? (size_t)(colon - cfg.hostport) : n;
        if (hn >= sizeof cfg.host) return -1;
        memcpy(cfg.host, cfg.hostport, hn);
        cfg.host[hn] = '\0';
        cfg.port = colon ? atoi(colon + 1) : 80;
    }
    if (strcmp(cfg.host, "localhost") == 0) strcpy(cfg.host, "127.0.0.1");
    {
        struct in_addr tmp;
        if (inet_pton(AF_INET, cfg.host, &tmp) != 1) return -1;
    }
    return cfg.port > 0 && cfg.port < 65536 ? 0 : -1;
}

/* --fanout after every connection is open: join, then rounds. */
static int fanout_run(void) {
    uint64_t t0, deadline;
    double cpu0, cpu1, secs, rate;
    int i;
    for (i = 0; i < cfg.conns; i++) {
        conn *c = &conns[i];
        if (c->state != C_OPEN) continue;
        static const char join[] = "{\"type\":\"room.join\",\"rpcId\":\"j\"}";
        send_frame(c, 1, join, sizeof join - 1);
        flush(c);
    }
    deadline = now_ns + 10000000000ull;
    while (!got_signal && !errors && fan_joined < open_count && now_ns < deadline) poll_once(100);
    if (fan_joined < open_count && !errors) {
        errors++;
        snprintf(first_error, sizeof first_error, "%d of %d connections joined within 10 s", fan_joined,
                 open_count);
    }
    fan_active = open_count;
    if (!errors && !got_signal) {
        cpu0 = cpu_seconds();
        fan_running = 1;
        t0 = now_ns = clock_ns();
        fan_t_end = t0 + (uint64_t)(cfg.seconds * 1e9);
        fan_t_last = t0;
        fan_start_round();
        deadline = fan_t_end + 5000000000ull;
        while (!fan_finished && !errors && !got_signal && now_ns < deadline) {
            uint64_t wait = now_ns < fan_t_end ? (fan_t_end - now_ns) / 1000000 + 1 : 100;
            poll_once((int)wait);
        }
        cpu1 = cpu_seconds();
        if (!fan_finished && !errors) {
            errors++;
            snprintf(first_error, sizeof first_error,
                     "the last round did not complete within 5 s (%d of %d connections had all %d messages)",
                     fan_done, fan_active, fan_active);
        }
    } else {
        cpu0 = cpu1 = cpu_seconds();
        t0 = fan_t_last = now_ns;
    }
    secs = (double)(fan_t_last - t0) / 1e9;
    rate = secs > 0 ? (double)fan_rounds * fan_active * fan_active / secs : 0;
    printf("fanout: conns %d in one room, text %zu B, message %llu B, seconds %.2f\n", fan_active,
           cfg.size, (unsigned long long)fan_len, secs);
    printf("rounds %llu  deliveries %llu (counted %llu; %llu checked whole)\n",
           (unsigned long long)fan_rounds, (unsigned long long)(fan_rounds * (uint64_t)fan_active * fan_active),
           (unsigned long long)fan_delivered, (unsigned long long)fan_checked);
    printf("deliveries/s %.0f  rounds/s %.0f\n", rate, secs > 0 ? (double)fan_rounds / secs : 0);
    printf("round_us p50 %.1f p99 %.1f\n", hist_quantile(0.50) / 1e3, hist_quantile(0.99) / 1e3);
    printf("loadgen CPU %.0f%% of one core\n", secs > 0 ? 100.0 * (cpu1 - cpu0) / secs : 0);
    printf("errors %llu%s%s\n", (unsigned long long)errors, errors ? "  first: " : "", first_error);
    printf("RESULT mode=fanout conns=%d rounds=%llu deliveries=%llu deliveries_per_s=%.0f msg_bytes=%llu "
           "p50_us=%.1f p99_us=%.1f loadgen_cpu=%.0f errors=%llu\n",
           fan_active, (unsigned long long)fan_rounds,
           (unsigned long long)(fan_rounds * (uint64_t)fan_active * fan_active), rate,
           (unsigned long long)fan_len, hist_quantile(0.50) / 1e3, hist_quantile(0.99) / 1e3,
           secs > 0 ? 100.0 * (cpu1 - cpu0) / secs : 0, (unsigned long long)errors);
    return errors ? 1 : 0;
}

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s --url ws://127.0.0.1:PORT/ --conns N --size BYTES --seconds S\n"
            "          [--pipeline K] [--text]\n"
            "       %s --url ws://127.0.0.1:PORT/ --conns N --idle [--seconds S]\n"
            "       %s --url ws://127.0.0.1:PORT/ --rpc [--conns N] [--pipeline K] [--seconds S]\n"
            "          [--route NAME] [--payload JSON]\n"
            "       %s --url ws://127.0.0.1:PORT/ --fanout [--conns N] [--seconds S] [--size TEXT_BYTES]\n",
            argv0, argv0, argv0, argv0);
    exit(2);
}

int main(int argc, char **argv) {
    const char *url = NULL;
    struct sigaction sa;
    uint64_t t0, t_end, deadline;
    double cpu0, cpu1;
    int i, launched = 0;

    cfg.conns = 100;
    cfg.size = 16;
    cfg.seconds = -1;
    cfg.pipeline = 1;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--url") && more) url = argv[++i];
        else if (!strcmp(a, "--conns") && more) cfg.conns = atoi(argv[++i]);
        else if (!strcmp(a, "--size") && more) cfg.size = (size_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--seconds") && more) cfg.seconds = atof(argv[++i]);
        else if (!strcmp(a, "--pipeline") && more) cfg.pipeline = atoi(argv[++i]);
        else if (!strcmp(a, "--text")) cfg.text = 1;
        else if (!strcmp(a, "--idle")) cfg.idle = 1;
        else if (!strcmp(a, "--rpc")) cfg.mode = M_RPC;
        else if (!strcmp(a, "--fanout")) cfg.mode = M_FANOUT;
        else if (!strcmp(a, "--route") && more) cfg.route = argv[++i];
        else if (!strcmp(a, "--payload") && more) cfg.payload = argv[++i];
        else usage(argv[0]);
    }
    if (!url || parse_url(url) < 0) {
        fprintf(stderr, "loadgen: need --url ws://IPv4:PORT/path\n");
        usage(argv[0]);
    }
    if (cfg.seconds < 0) cfg.seconds = cfg.idle ? 600 : 10;
    if (cfg.conns < 1 || cfg.pipeline < 1 || cfg.size > ((size_t)1 << 30)) usage(argv[0]);
    if (!cfg.route) cfg.route = "bench.echo";
    if (!cfg.payload) cfg.payload = "{\"n\":123}";
    if (cfg.mode == M_RPC) {
        int n = snprintf(rpc_prefix, sizeof rpc_prefix, "{\"type\":\"%s\",\"payload\":%s,\"rpcId\":\"",
                         cfg.route, cfg.payload);
        if (n < 0 || (size_t)n >= sizeof rpc_prefix) {
            fprintf(stderr, "loadgen: --route and --payload too long\n");
            return 2;
        }
        rpc_prefix_len = (size_t)n;
    }
    if (cfg.mode == M_FANOUT) {
        size_t k;
        int n;
        if (cfg.size >= sizeof fan_text || cfg.conns > 9999) {
            fprintf(stderr, "loadgen: --fanout takes at most 9999 connections and %zu bytes of text\n",
                    sizeof fan_text - 1);
            return 2;
        }
        for (k = 0; k < cfg.size; k++) fan_text[k] = (char)('a' + k % 26);
        fan_text[cfg.size] = '\0';
        n = snprintf(fan_msg, sizeof fan_msg, "{\"type\":\"room.send\",\"payload\":{\"from\":\"c");
        fan_id_at = (size_t)n;
        n += snprintf(fan_msg + n, sizeof fan_msg - (size_t)n, "0000\",\"text\":\"%s\"}}", fan_text);
        fan_msg_len = (size_t)n;
        fan_buf = (unsigned char *)malloc(FAN_BUF);
        if (!fan_buf) return 1;
    }
    if (cfg.idle) read_chunk = 4096;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    rng_state ^= clock_ns() * GOLD;

    block = (uint64_t *)malloc((cfg.size / 8 + 1) * sizeof *block);
    if (!block) return 1;
    for (i = 0; i < (int)(cfg.size / 8 + 1); i++) block[i] = rng_next() ^ ((uint64_t)i * GOLD);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    conns = (conn *)calloc((size_t)cfg.conns, sizeof *conns);
    if (epfd < 0 || !conns) {
        fprintf(stderr, "loadgen: out of resources\n");
        return 1;
    }
    for (i = 0; i < cfg.conns; i++) {
        conns[i].id = i;
        conns[i].fd = -1;
        conns[i].sent_at = cfg.idle ? NULL : (uint64_t *)calloc((size_t)cfg.pipeline, sizeof(uint64_t));
        if (!cfg.idle && !conns[i].sent_at) {
            fprintf(stderr, "loadgen: out of memory\n");
            return 1;
        }
    }

    /* connect everyone, at most MAX_PENDING handshakes at a time */
    now_ns = clock_ns();
    deadline = now_ns + 60ull * 1000000000ull;
    while (!got_signal && now_ns < deadline) {
        while (launched < cfg.conns && pending_count < MAX_PENDING) start_connect(&conns[launched++]);
        if (launched == cfg.conns && pending_count == 0) break;
        poll_once(100);
    }
    for (i = 0; i < cfg.conns; i++)
        if (conns[i].state == C_CONNECTING || conns[i].state == C_HANDSHAKE || conns[i].state == C_NEW)
            fail(&conns[i], "not connected within 60 s");

    if (cfg.idle) {
        printf("ready %d\n", open_count);
        if (errors) printf("errors %llu (first: %s)\n", (unsigned long long)errors, first_error);
        fflush(stdout);
        deadline = now_ns + (uint64_t)(cfg.seconds * 1e9);
        while (!got_signal && now_ns < deadline) poll_once(1000);
        printf("idle end: open %d errors %llu\n", open_count, (unsigned long long)errors);
        return errors ? 1 : 0;
    }

    if (cfg.mode == M_FANOUT) return fanout_run();

    /* the timed run */
    cpu0 = cpu_seconds();
    t0 = now_ns = clock_ns();
    t_end = t0 + (uint64_t)(cfg.seconds * 1e9);
    for (i = 0; i < cfg.conns; i++) {
        conn *c = &conns[i];
        int k;
        if (c->state != C_OPEN) continue;
        for (k = 0; k < cfg.pipeline; k++) send_message(c);
        flush(c);
    }
    while (!got_signal && now_ns < t_end && open_count > 0) poll_once((int)((t_end - now_ns) / 1000000) + 1);
    t_end = now_ns;
    cpu1 = cpu_seconds();
    stopping_sends = 1;
    /* collect what is still in flight (counted in messages, not in the rate) */
    deadline = now_ns + 2000000000ull;
    for (;;) {
        int busy = 0;
        for (i = 0; i < cfg.conns; i++)
            if (conns[i].state == C_OPEN && conns[i].recv_seq < conns[i].sent_seq) busy++;
        if (!busy || now_ns >= deadline || got_signal) {
            if (busy) {
                errors += (uint64_t)busy;
                if (!first_error[0]) snprintf(first_error, sizeof first_error, "%d connections never got their last echo", busy);
            }
            break;
        }
        poll_once(50);
    }
    {
        double secs = (double)(t_end - t0) / 1e9;
        double rate = secs > 0 ? (double)window_msgs / secs : 0;
        if (cfg.mode == M_RPC)
            printf("rpc: conns %d pipeline %d route %s payload %s seconds %.2f\n", cfg.conns,
                   cfg.pipeline, cfg.route, cfg.payload, secs);
        else
            printf("conns %d size %zu pipeline %d %s seconds %.2f\n", cfg.conns, cfg.size, cfg.pipeline,
                   cfg.text ? "text" : "binary", secs);
        printf("messages %llu  (%llu in the timed window)\n", (unsigned long long)total_msgs,
               (unsigned long long)window_msgs);
        printf("msgs/s %.0f\n", rate);
        printf("MB/s %.2f  (payload, each way)\n", rate * (double)cfg.size / 1e6);
        printf("rtt_us p50 %.1f p99 %.1f\n", hist_quantile(0.50) / 1e3, hist_quantile(0.99) / 1e3);
        printf("loadgen CPU %.0f%% of one core\n", secs > 0 ? 100.0 * (cpu1 - cpu0) / secs : 0);
        printf("errors %llu%s%s\n", (unsigned long long)errors, errors ? "  first: " : "", first_error);
        printf("RESULT mode=%s msgs=%llu msgs_per_s=%.0f mb_per_s=%.2f p50_us=%.1f p99_us=%.1f loadgen_cpu=%.0f errors=%llu\n",
               cfg.mode == M_RPC ? "rpc" : "echo", (unsigned long long)total_msgs, rate,
               rate * (double)cfg.size / 1e6,
               hist_quantile(0.50) / 1e3, hist_quantile(0.99) / 1e3,
               secs > 0 ? 100.0 * (cpu1 - cpu0) / secs : 0, (unsigned long long)errors);
    }
    return errors ? 1 : 0;
}
