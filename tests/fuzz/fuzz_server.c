/* libFuzzer harness for a whole server connection: a zk_app on a virtual
   clock reads arbitrary bytes from a loopback peer that the harness plays
   by hand (no zk_conn on that side: the bytes are written as they are).

   Input: two configuration bytes, then the bytes the peer sends (an HTTP
   upgrade request and frames, masked or not, valid or not).
     byte 0  bits 0-1  the app: 0 plain; 1 require_auth; 2 tight limits
                       (max_message 300, write_high_water 256, write_limit
                       4096, 5 messages a second with bursts of 3, 2 rooms
                       and 2 kept requests per connection); 3 require_auth,
                       path "/ws", an Origin allow-list, MessagePack only
             bits 2-3  write sizes: all at once; 1 to 3, 17, 140 or 2000
                       bytes; up to a point the seed picks, then one byte
                       at a time; 1 to 8 bytes. The 32nd write takes all
                       that is left.
             bits 4-5  virtual time after each write: none; 0-15 ms;
                       0-400 ms; one of 0, 50, 600, 1100 or 2100 ms
             bit 6     answer kept requests (ok or failed) between writes
             bit 7     at the end: 0 shut down the write side (EOF) at
                       once; 1 stay silent for 10 s first, then close
     byte 1  seeds the generator of the sizes and times; it also picks,
             one input in four each, loopback deliveries in pieces of 1 to
             64 bytes and a small loopback capacity (512 to 4607 bytes per
             direction, with the peer often not reading what it is sent).
   Deadlines are short (handshake 1 s, idle 2 s, pong 1 s, close 500 ms,
   a message 800 ms, writes 700 ms, requests 1.5 s, __auth 1.5 s), so the
   times above reach them.

   Routes: "echo" (answered at once), "users.get" (a schema, then echo),
   "jobs.slow" (kept, answered later by the harness or TIMEOUT), "room.send"
   (a schema; joins payload.room and sends payload.text to it as
   "room.msg"), "room.leave", "news" (to every connection; payload % 3 is
   the delivery), "bye" (the handler closes its own connection, 4000),
   "drop" (the handler aborts it), "__auth" (ok for "ok").

   Aborts when:
   - the loop still has work after 100000 rounds, or a timer falls due
     1000 times at one instant (busy loops), or the server stops reading
     its input (other than while its queue is past the high-water mark
     and the peer reads nothing: then the peer reads), or a kept request's
     late answer returns anything but 0, ZK_ETIMEDOUT or ZK_ECLOSED (only
     the last two once the connection is gone);
   - the server's output does not parse with zk_http_parse_response as one
     response head followed by:
     - for 101: only when the request (parsed whole by
       zk_http_parse_request) passes zk_ws_upgrade_check, with its
       Sec-WebSocket-Accept and subprotocol; then a stream of server frames
       that a client-role zk_ws reads without an ERROR (unmasked, valid
       UTF-8 text, valid close codes, no reserved bits, no fragmented or
       oversized control frames), ending with the last frame complete
       (unless a small capacity could cut the stream when the connection
       dropped), where only pongs follow a close frame, pings are empty,
       pongs echo a subsequence of the peer's pings in order, messages are
       text for zocket.json (or no subprotocol) and binary for
       zocket.msgpack, each a JSON object or MessagePack map with a string
       type that is __rpc_res/__rpc_err (with an rpcId), __error (with
       error.code and error.message, no rpcId), __pong, room.msg or news,
       and no rpcId is answered more often than it was called (the frames
       the peer got to send, decoded by a server-role zk_ws, each message
       classified as the app does), __error no more often than there were
       events, other messages no more often than there were messages;
       and, when reads are not delayed (no small capacity), with the times
       of the peer's writes and reads: a ping only after IDLE_MS without a
       write from the peer, a close 1008 "message too slow" only when a
       message (all its frames) or a control frame had its first byte sent
       MESSAGE_MS before and its last byte not yet (or never: cut short,
       or broken);
     - otherwise: a refusal whose Content-Length body ends the output, with
       400/431/505 for a malformed head, 426 for a plain request,
       zk_ws_upgrade_check's status for a bad upgrade, 400/403/404/503 for
       one the app refused; never an answer to a head that is incomplete
       (the whole input parses ZK_EAGAIN);
   - the output is empty although the whole head was written before the
     handshake deadline (unless "drop" ran);
   - the app's accepted count does not grow by exactly one for a 101;
   - after the end: the server still has the connection although its peer
     shut down (or 10 s of silence passed), or after the peer closed and
     close_timeout passed; the app still has members, rooms, kept
     requests, open connections; the loop still has timers or work;
   - the library holds more than MAX_LIVE allocations after an input.
   LeakSanitizer checks at exit that everything was freed. */
#define _GNU_SOURCE /* the library's includes: before any system header */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The library's live allocations. */
static long lib_live;
static void *count_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (q && !p) lib_live++;
    return q;
}
static void count_free(void *p) {
    if (p) lib_live--;
    free(p);
}
#define ZK_MALLOC(n) count_realloc(NULL, n)
#define ZK_REALLOC(p, n) count_realloc(p, n)
#define ZK_FREE(p) count_free(p)
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#define CHECK(c) do { if (!(c)) { \
    fprintf(stderr, "fuzz_server: invariant broken at line %d: %s\n", __LINE__, #c); \
    abort(); } } while (0)

#define HANDSHAKE_MS 1000
#define IDLE_MS 2000
#define PONG_MS 1000
#define CLOSE_MS 500
#define MESSAGE_MS 800
#define WRITE_MS 700
#define REQUEST_MS 1500
#define AUTH_MS 1500
#define NAPPS 4
#define MAX_KEPT 64
#define MAX_WRITES 32 /* writes per input: each costs a few reads and passes */
#define MAX_LIVE 512

static zk_loop *loop;
static zk_router *router;
static zk_app *apps[NAPPS];
static zk_request *kept[MAX_KEPT];
static int nkept;
static int dropped; /* "drop" ran in this input */

/* ---- growable bytes ---- */

typedef struct bytes {
    unsigned char *p;
    size_t len, cap;
} bytes;

static void bytes_add(bytes *b, const void *s, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n) cap *= 2;
        b->p = (unsigned char *)realloc(b->p, cap);
        CHECK(b->p != NULL);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* An exact malloc'd copy, so ASan catches a read past the end. */
static unsigned char *copy_exact(const void *s, size_t n) {
    unsigned char *p = (unsigned char *)malloc(n ? n : 1);
    CHECK(p != NULL);
    if (n) memcpy(p, s, n);
    return p;
}

/* ---- routes ---- */

static const zk_schema user_fields[] = {
    {"name", ZK_TYPE_STRING, ZK_SCHEMA_MIN | ZK_SCHEMA_MAX, 1, 16, NULL, NULL},
    {"age", ZK_TYPE_INT, ZK_SCHEMA_OPTIONAL | ZK_SCHEMA_MIN | ZK_SCHEMA_MAX, 0, 150, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL}};
static const zk_schema tag = {NULL, ZK_TYPE_STRING, ZK_SCHEMA_MAX, 0, 8, NULL, NULL};
static const zk_schema get_fields[] = {
    {"user", ZK_TYPE_OBJECT, 0, 0, 0, user_fields, NULL},
    {"tags", ZK_TYPE_ARRAY, ZK_SCHEMA_OPTIONAL | ZK_SCHEMA_MAX, 0, 4, NULL, &tag},
    {NULL, 0, 0, 0, 0, NULL, NULL}};
static const zk_schema get_input = {NULL, ZK_TYPE_OBJECT, ZK_SCHEMA_STRICT, 0, 0, get_fields, NULL};
static const zk_schema room_fields[] = {
    {"room", ZK_TYPE_STRING, ZK_SCHEMA_MIN | ZK_SCHEMA_MAX, 1, 32, NULL, NULL},
    {"text", ZK_TYPE_NONE, ZK_SCHEMA_OPTIONAL, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL}};
static const zk_schema room_input = {NULL, ZK_TYPE_OBJECT, 0, 0, 0, room_fields, NULL};

static void h_echo(zk_request *req) {
    zk_value p = zk_request_payload(req);
    if (zk_value_type(p) != ZK_TYPE_NONE) zk_write_value(zk_request_writer(req), p);
}

static void h_slow(zk_request *req) {
    zk_request *k = zk_request_keep(req);
    if (!k) return;
    if (nkept < MAX_KEPT) kept[nkept++] = k;
    else CHECK(zk_request_ok(k) == 0); /* no room to keep it: answered now */
}

/* The room name of a payload, cut at a NUL as zk_room_join would. */
static void room_name(zk_request *req, char out[40]) {
    zk_str s = zk_value_str(zk_value_get(zk_request_payload(req), "room"));
    size_t n = s.len < 39 ? s.len : 39;
    if (n) memcpy(out, s.ptr, n);
    out[n] = '\0';
}

static void h_room_send(zk_request *req) {
    char room[40];
    const char *rooms[1];
    zk_app *a = zk_request_app(req);
    zk_conn *c = zk_request_conn(req);
    zk_value text = zk_value_get(zk_request_payload(req), "text");
    int rc;
    room_name(req, room);
    rc = zk_room_join(c, room);
    CHECK(rc == 0 || rc == 1 || rc == ZK_EINVAL || rc == ZK_ENOSPACE);
    if (rc >= 0) {
        zk_target to;
        zk_writer *w = zk_app_message(a, "room.msg");
        int n;
        if (zk_value_type(text) != ZK_TYPE_NONE) zk_write_value(w, text);
        memset(&to, 0, sizeof to);
        rooms[0] = room;
        to.rooms = rooms;
        to.room_count = 1;
        n = zk_app_send(a, &to);
        CHECK(n == 0 || n == 1 || n == ZK_EINVAL); /* EINVAL: text too deep for the envelope */
    }
    zk_write_int(zk_request_writer(req), rc);
}

static void h_room_leave(zk_request *req) {
    char room[40];
    int rc;
    room_name(req, room);
    rc = zk_room_leave(zk_request_conn(req), room);
    CHECK(rc == 0 || rc == ZK_ENOTFOUND || rc == ZK_EINVAL); /* EINVAL: a name cut to "" at a NUL */
    zk_write_int(zk_request_writer(req), rc);
}

static void h_news(zk_request *req) {
    zk_app *a = zk_request_app(req);
    zk_value p = zk_request_payload(req);
    zk_target to;
    zk_writer *w = zk_app_message(a, "news");
    int n;
    if (zk_value_type(p) != ZK_TYPE_NONE) zk_write_value(w, p);
    memset(&to, 0, sizeof to);
    to.all = 1;
    to.delivery = (int)((uint64_t)zk_value_int(p, 0) % 3);
    n = zk_app_send(a, &to);
    CHECK(n == 0 || n == 1 || n == ZK_EINVAL);
}

static void h_bye(zk_request *req) {
    int rc = zk_conn_close(zk_request_conn(req), 4000, "bye");
    CHECK(rc == 0 || rc == ZK_ECLOSED);
}

/* An abort drops what was not written yet, even the 101 when it is in the
   same read: an empty output is then allowed. */
static void h_drop(zk_request *req) {
    dropped = 1;
    zk_conn_abort(zk_request_conn(req));
}

static void h_auth(zk_request *req) {
    zk_str s = zk_value_str(zk_request_payload(req));
    if (s.len == 2 && memcmp(s.ptr, "ok", 2) == 0) return;
    zk_request_fail(req, ZK_CODE_UNAUTHORIZED, "no");
}

/* ---- the loop ---- */

/* Runs the work there is and the timers due now, as zk_loop_advance does
   but one timer at a time: work that never runs dry, or a timer that falls
   due again and again at one instant, is a busy loop (a real loop would
   spin at full speed; zk_loop_advance would never return). */
static void run_work(void) {
    int rounds = 0, fired = 0;
    for (;;) {
        while (loop->work) {
            CHECK(++rounds < 100000);
            zk__work_run(loop);
        }
        if (!loop->heap_len || loop->heap[0]->due > loop->now) return;
        {
            zk_timer *t = loop->heap[0];
            CHECK(++fired < 1000);
            zk_timer_stop(t);
            if (t->repeat) zk_timer_start(t, t->repeat, t->repeat);
            t->fn(t);
        }
    }
}

static void answer_one(int i, int ok, int gone) {
    int rc;
    if (ok) {
        zk_write_int(zk_request_writer(kept[i]), i);
        rc = zk_request_ok(kept[i]);
    } else {
        rc = zk_request_fail(kept[i], "LATE_FAILURE", "failed later");
    }
    if (gone) CHECK(rc == ZK_ETIMEDOUT || rc == ZK_ECLOSED);
    else CHECK(rc == 0 || rc == ZK_ETIMEDOUT || rc == ZK_ECLOSED);
    kept[i] = kept[--nkept];
}

/* ---- the peer's generator of sizes and times ---- */

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t next_size(int mode, uint64_t *s, int nth, size_t len) {
    static const size_t spans[4] = {3, 17, 140, 2000};
    uint64_t r;
    if (nth == MAX_WRITES - 1) return len;
    switch (mode) {
    case 0: return len;
    case 1: r = rng_next(s); return 1 + (size_t)((r >> 8) % spans[r & 3]);
    case 2: return nth ? 1 : 1 + (size_t)(rng_next(s) % len);
    default: return 1 + (size_t)(rng_next(s) % 8);
    }
}

static uint64_t next_time(int mode, uint64_t *s) {
    static const uint64_t steps[5] = {0, 50, 600, 1100, 2100};
    switch (mode) {
    case 0: return 0;
    case 1: return rng_next(s) % 16;
    case 2: return rng_next(s) % 401;
    default: return steps[rng_next(s) % 5];
    }
}

/* ---- the peer's end of the loopback pair ---- */

/* When bytes went: the stream offset (or output length) reached at loop
   time t; last_write is the time of the peer's last write before it. */
typedef struct stamp {
    size_t at;
    uint64_t t, last_write;
} stamp;

typedef struct stamps {
    stamp *s;
    size_t n, cap;
} stamps;

static void stamp_add(stamps *l, size_t at, uint64_t t, uint64_t last_write) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->s = (stamp *)realloc(l->s, l->cap * sizeof *l->s);
        CHECK(l->s != NULL);
    }
    l->s[l->n].at = at;
    l->s[l->n].t = t;
    l->s[l->n].last_write = last_write;
    l->n++;
}

/* The entry that carried byte `at`, or NULL when none did. */
static const stamp *stamp_of(const stamps *l, size_t at) {
    size_t i;
    for (i = 0; i < l->n; i++)
        if (l->s[i].at > at) return &l->s[i];
    return NULL;
}

typedef struct peer {
    zk__lb_pair *pair;
    zk__lb_end *end;   /* ours: end[0]; the server's connection has end[1] */
    bytes out;         /* everything the server wrote */
    stamps writes;     /* stream offsets written, and when */
    stamps reads;      /* output lengths read, and when */
    uint64_t last_write;
    int eof, stalled;
} peer;

/* Reads what the server wrote; returns 1 when it read something. */
static int peer_read(peer *p) {
    unsigned char buf[4096];
    int got = 0;
    if (p->stalled) return 0;
    for (;;) {
        long n = zk__lb_read(&p->end->base, buf, sizeof buf);
        if (n == ZK_EAGAIN) break;
        if (n == 0) {
            p->eof = 1;
            break;
        }
        CHECK(n > 0 && (size_t)n <= sizeof buf);
        bytes_add(&p->out, buf, (size_t)n);
        stamp_add(&p->reads, p->out.len, zk_loop_now(loop), p->last_write);
        got = 1;
    }
    return got;
}

/* Runs the loop and reads until neither has anything left to do. */
static void settle(peer *p) {
    int i;
    for (i = 0; i < 10000; i++) {
        run_work();
        if (!peer_read(p)) return;
    }
    CHECK(0); /* output without end */
}

/* Moves the virtual clock on by ms, stopping at each timer that falls due
   to run it and read, so the time of a read is the time the server wrote
   what it got. */
static void advance(peer *p, uint64_t ms) {
    uint64_t until = loop->now + ms;
    settle(p);
    while (loop->heap_len && loop->heap[0]->due <= until) {
        if (loop->heap[0]->due > loop->now) loop->now = loop->heap[0]->due;
        settle(p);
    }
    loop->now = until;
    settle(p);
}

static int server_end_closed(const peer *p) { return p->pair->end[1].closed; }

/* Writes s[0..n), which starts at offset `at` of the stream, to the
   server; stops early when its end is closed. */
static void peer_write(peer *p, const unsigned char *s, size_t n, size_t at) {
    int idle = 0;
    while (n && !server_end_closed(p)) {
        struct iovec iov;
        long w;
        iov.iov_base = (void *)(uintptr_t)s;
        iov.iov_len = n;
        w = zk__lb_writev(&p->end->base, &iov, 1);
        if (w < 0) {
            CHECK(w == ZK_EIO);
            return;
        }
        s += w;
        n -= (size_t)w;
        at += (size_t)w;
        if (w > 0) {
            p->last_write = zk_loop_now(loop);
            stamp_add(&p->writes, at, p->last_write, p->last_write);
        }
        if (w == 0) {
            zk_conn *sc = p->pair->end[1].base.conn;
            /* the server must read what it is sent, unless its queue is past
               the high-water mark (it waits for the peer to read): a peer
               that cannot write then reads */
            if (p->stalled && sc && sc->rpaused) p->stalled = 0;
            else CHECK(++idle < 4);
            settle(p);
        } else {
            idle = 0;
        }
    }
}

/* ---- what the peer sent, read as the server should read it ---- */

typedef struct call_key {
    char *k;
    size_t n;
    int calls, answers;
} call_key;

typedef struct model {
    /* the request head, parsed whole */
    int head;                   /* its size, or ZK_EAGAIN, ZK_EHTTP, ZK_ETOOBIG */
    int upgrade;                /* zk_ws_upgrade_check's result when head > 0 */
    int refuse_status;          /* up.status after ZK_EHANDSHAKE */
    char accept[29];
    const char *protocol;
    /* the frames after it */
    size_t messages, events;
    call_key *keys;
    size_t nkeys, cap;
    bytes pings;                /* payloads, each after one length byte */
    size_t ping_at;             /* pongs matched up to here */
    /* where each message (all its frames) and each control frame starts
       and ends in the stream; end SIZE_MAX: never complete */
    struct span { size_t first, end; } *spans;
    size_t nspans, spans_cap;
} model;

static void span_add(model *m, size_t first, size_t end) {
    if (m->nspans == m->spans_cap) {
        m->spans_cap = m->spans_cap ? m->spans_cap * 2 : 16;
        m->spans = (struct span *)realloc(m->spans, m->spans_cap * sizeof *m->spans);
        CHECK(m->spans != NULL);
    }
    m->spans[m->nspans].first = first;
    m->spans[m->nspans].end = end;
    m->nspans++;
}

static call_key *key_find(model *m, const char *k, size_t n, int add) {
    size_t i;
    for (i = 0; i < m->nkeys; i++)
        if (m->keys[i].n == n && memcmp(m->keys[i].k, k, n) == 0) return &m->keys[i];
    if (!add) return NULL;
    if (m->nkeys == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 16;
        m->keys = (call_key *)realloc(m->keys, m->cap * sizeof *m->keys);
        CHECK(m->keys != NULL);
    }
    m->keys[m->nkeys].k = (char *)copy_exact(k, n);
    m->keys[m->nkeys].n = n;
    m->keys[m->nkeys].calls = m->keys[m->nkeys].answers = 0;
    return &m->keys[m->nkeys++];
}

/* An rpcId as a key: "s" and the string's bytes, or "i" and the integer.
   0 when it is neither (then the message is an event). */
static int rpc_key(zk_value v, char *out, size_t *n) {
    if (zk_value_type(v) == ZK_TYPE_STRING && zk_value_len(v) <= ZK_RPC_ID_MAX) {
        out[0] = 's';
        if (zk_value_len(v)) memcpy(out + 1, zk_value_str(v).ptr, zk_value_len(v));
        *n = 1 + zk_value_len(v);
        return 1;
    }
    if (zk_value_type(v) == ZK_TYPE_INT) {
        *n = (size_t)snprintf(out, 32, "i%lld", (long long)zk_value_int(v, 0));
        return 1;
    }
    return 0;
}

static int parse_message(zk_doc *d, unsigned char *buf, size_t len, int binary) {
    return binary ? zk_msgpack_parse(d, (const char *)buf, len) : zk_json_parse(d, (char *)buf, len);
}

/* A message the peer sent: a call (counted under its rpcId) or an event,
   by the app's rules. */
static void model_message(model *m, zk_str data, int binary, int msgpack) {
    zk_doc d;
    unsigned char *buf;
    char key[ZK_RPC_ID_MAX + 2];
    size_t n;
    m->messages++;
    if (binary != msgpack) {
        m->events++;
        return;
    }
    buf = copy_exact(data.ptr, data.len);
    zk_doc_init(&d);
    if (parse_message(&d, buf, data.len, binary) == ZK_OK && zk_value_type(zk_doc_root(&d)) == ZK_TYPE_OBJECT &&
        rpc_key(zk_value_get(zk_doc_root(&d), "rpcId"), key, &n))
        key_find(m, key, n, 1)->calls++;
    else
        m->events++;
    zk_doc_free(&d);
    free(buf);
}

/* The frames after the head (at offset base of the stream), decoded as
   the server's engine decodes them, up to a close or an error. */
static void model_frames(model *m, const unsigned char *s, size_t len, size_t base, size_t max_message,
                         int msgpack) {
    unsigned char *buf = copy_exact(s, len);
    zk_ws ws;
    zk_ws_opts o;
    size_t at = 0, msg_first = 0;
    int done = 0;
    memset(&o, 0, sizeof o);
    o.role = ZK_WS_SERVER;
    o.max_message = max_message;
    zk_ws_init(&ws, &o);
    while (at < len && !done) {
        zk_ws_event ev;
        size_t before = at, used;
        int pending = ws.flags & (ZK__WS_IN_FRAME | ZK__WS_IN_MESSAGE);
        if (!pending && (buf[at] & 0x0F) < 8) msg_first = at; /* a data message starts */
        used = zk_ws_feed(&ws, buf + at, len - at, &ev);
        at += used;
        switch (ev.type) {
        case ZK_WS_EV_TEXT:
        case ZK_WS_EV_BINARY:
            span_add(m, base + msg_first, base + at);
            model_message(m, ev.data, ev.type == ZK_WS_EV_BINARY, msgpack);
            break;
        case ZK_WS_EV_PING: {
            unsigned char n = (unsigned char)ev.data.len;
            span_add(m, base + before, base + at);
            bytes_add(&m->pings, &n, 1);
            bytes_add(&m->pings, ev.data.ptr, ev.data.len);
            break;
        }
        case ZK_WS_EV_PONG:
            span_add(m, base + before, base + at);
            break;
        case ZK_WS_EV_CLOSE:
            span_add(m, base + before, base + at);
            done = 1;
            break;
        case ZK_WS_EV_ERROR: /* what was arriving never ends well */
            span_add(m, base + (pending ? msg_first : before), SIZE_MAX);
            done = 1;
            break;
        default:
            if (!used) { /* a partial frame header ends the stream */
                span_add(m, base + (ws.flags & ZK__WS_IN_MESSAGE ? msg_first : at), SIZE_MAX);
                done = 1;
            }
            break;
        }
    }
    if (!done && (ws.flags & (ZK__WS_IN_FRAME | ZK__WS_IN_MESSAGE))) span_add(m, base + msg_first, SIZE_MAX);
    zk_ws_free(&ws);
    free(buf);
}

/* The write time of stream byte `at`, or UINT64_MAX when it was not sent. */
static uint64_t sent_at(const peer *p, size_t at) {
    const stamp *st = at == SIZE_MAX ? NULL : stamp_of(&p->writes, at);
    return st ? st->t : UINT64_MAX;
}

/* A close for message_timeout_ms read at time t: some message (or control
   frame) had its first byte MESSAGE_MS before and was not whole by then. */
static int message_was_slow(const model *m, const peer *p, uint64_t t) {
    size_t i;
    for (i = 0; i < m->nspans; i++) {
        uint64_t first = sent_at(p, m->spans[i].first);
        uint64_t last = m->spans[i].end == SIZE_MAX ? UINT64_MAX : sent_at(p, m->spans[i].end - 1);
        if (first != UINT64_MAX && first + MESSAGE_MS <= t && last >= t) return 1;
    }
    return 0;
}

static void model_head(model *m, const unsigned char *s, size_t len, const zk_server *srv) {
    static zk_http_request req; /* big: keep it off the stack */
    char *buf = (char *)copy_exact(s, len);
    zk_ws_upgrade up;
    m->head = zk_http_parse_request(buf, len, 0, &req, NULL);
    m->upgrade = ZK_EAGAIN;
    if (m->head > 0) {
        m->upgrade = zk_ws_upgrade_check(&req, srv->opts.protocols, srv->opts.protocol_count, &up);
        m->refuse_status = up.status;
        memcpy(m->accept, up.accept, sizeof m->accept);
        m->protocol = up.protocol;
    }
    free(buf);
}

static void model_free(model *m) {
    size_t i;
    for (i = 0; i < m->nkeys; i++) free(m->keys[i].k);
    free(m->keys);
    free(m->pings.p);
    free(m->spans);
}

/* A pong the server sent must answer one of the peer's pings, after the
   ones already answered. */
static void match_pong(model *m, zk_str data) {
    while (m->ping_at < m->pings.len) {
        size_t n = m->pings.p[m->ping_at];
        const unsigned char *p = m->pings.p + m->ping_at + 1;
        m->ping_at += 1 + n;
        if (n == data.len && (n == 0 || memcmp(p, data.ptr, n) == 0)) return;
    }
    CHECK(!"a pong that answers no ping");
}

/* ---- the server's output ---- */

typedef struct tally {
    size_t errors, others;
} tally;

static int str_is(zk_value v, const char *s) {
    zk_str t = zk_value_str(v);
    return zk_value_type(v) == ZK_TYPE_STRING && t.len == strlen(s) && memcmp(t.ptr, s, t.len) == 0;
}

static void check_error_object(zk_value e) {
    zk_value code = zk_value_get(e, "code"), message = zk_value_get(e, "message");
    CHECK(zk_value_type(code) == ZK_TYPE_STRING && zk_value_len(code) > 0 && zk_value_len(code) <= 64);
    CHECK(zk_value_type(message) == ZK_TYPE_STRING && zk_value_len(message) > 0);
}

static void check_message(model *m, tally *t, zk_str data, int binary) {
    unsigned char *buf = copy_exact(data.ptr, data.len);
    zk_doc d;
    zk_value root, type;
    zk_doc_init(&d);
    CHECK(parse_message(&d, buf, data.len, binary) == ZK_OK);
    root = zk_doc_root(&d);
    CHECK(zk_value_type(root) == ZK_TYPE_OBJECT);
    type = zk_value_get(root, "type");
    if (str_is(type, "__rpc_res") || str_is(type, "__rpc_err")) {
        char key[ZK_RPC_ID_MAX + 2];
        size_t n;
        call_key *k;
        CHECK(rpc_key(zk_value_get(root, "rpcId"), key, &n));
        k = key_find(m, key, n, 0);
        CHECK(k != NULL);             /* an answer to a call that was not made */
        CHECK(++k->answers <= k->calls);
        if (str_is(type, "__rpc_err")) check_error_object(zk_value_get(root, "error"));
    } else if (str_is(type, "__error")) {
        check_error_object(zk_value_get(root, "error"));
        CHECK(zk_value_type(zk_value_get(root, "rpcId")) == ZK_TYPE_NONE);
        CHECK(++t->errors <= m->events);
    } else {
        CHECK(str_is(type, "__pong") || str_is(type, "room.msg") || str_is(type, "news"));
        CHECK(++t->others <= m->messages);
    }
    zk_doc_free(&d);
    free(buf);
}

/* What follows the server's close frame: pongs only (the engine answers
   pings after its own close, RFC 6455 5.5.2), each whole unless the
   stream may be cut. */
static void check_after_close(model *m, const unsigned char *s, size_t len, int may_cut) {
    size_t at = 0;
    while (at < len) {
        zk_str data;
        if (len - at < 2 || len - at < 2 + (size_t)(s[at + 1] & 0x7F)) {
            CHECK(may_cut);
            return;
        }
        CHECK(s[at] == (0x80 | ZK_WS_PONG));
        CHECK(s[at + 1] <= 125); /* unmasked, short */
        data.ptr = (const char *)s + at + 2;
        data.len = s[at + 1];
        match_pong(m, data);
        at += 2 + data.len;
    }
}

/* The frames after the head, which ends at output offset `head`. With
   timed reads (no small capacity, so nothing waits to be read), a ping
   came after IDLE_MS of silence and a close for a slow message after one
   was slow. */
static void check_frames(model *m, const peer *p, size_t head, int msgpack, int may_cut) {
    const unsigned char *s = p->out.p + head;
    size_t len = p->out.len - head;
    unsigned char *buf = copy_exact(s, len);
    zk_ws ws;
    zk_ws_opts o;
    tally t = {0, 0};
    size_t at = 0, i;
    memset(&o, 0, sizeof o);
    o.role = ZK_WS_CLIENT;
    o.max_message = (size_t)1 << 30;
    zk_ws_init(&ws, &o);
    while (at < len) {
        zk_ws_event ev;
        size_t used = zk_ws_feed(&ws, buf + at, len - at, &ev);
        at += used;
        if (ev.type == ZK_WS_EV_ERROR) {
            fprintf(stderr, "fuzz_server: the server's frames: %s\n", ev.error);
            CHECK(ev.type != ZK_WS_EV_ERROR);
        }
        if (ev.type == ZK_WS_EV_TEXT || ev.type == ZK_WS_EV_BINARY) {
            CHECK((ev.type == ZK_WS_EV_BINARY) == msgpack);
            check_message(m, &t, ev.data, ev.type == ZK_WS_EV_BINARY);
        } else if (ev.type == ZK_WS_EV_PING) {
            const stamp *st = stamp_of(&p->reads, head + at - 1);
            CHECK(ev.data.len == 0); /* the heartbeat */
            CHECK(may_cut || st->t - st->last_write >= IDLE_MS);
        } else if (ev.type == ZK_WS_EV_PONG) {
            match_pong(m, ev.data);
        } else if (ev.type == ZK_WS_EV_CLOSE) {
            static const char slow[] = "message too slow";
            if (!may_cut && ev.code == ZK_CLOSE_POLICY && ev.data.len == sizeof slow - 1 &&
                memcmp(ev.data.ptr, slow, ev.data.len) == 0)
                CHECK(message_was_slow(m, p, stamp_of(&p->reads, head + at - 1)->t));
            check_after_close(m, s + at, len - at, may_cut);
            at = len;
            break;
        } else if (used == 0) {
            break;
        }
    }
    if (!may_cut) CHECK(at == len && !(ws.flags & (ZK__WS_IN_FRAME | ZK__WS_IN_MESSAGE)));
    for (i = 0; i < m->nkeys; i++) CHECK(m->keys[i].answers <= m->keys[i].calls);
    zk_ws_free(&ws);
    free(buf);
}

static void check_output(model *m, const peer *p, const unsigned char *stream, size_t len,
                         const zk_server *srv, int head_in_time, int may_cut, uint64_t accepted) {
    static zk_http_response res;
    const bytes *out = &p->out;
    unsigned char *buf;
    int n;
    if (out->len == 0) {
        CHECK(!head_in_time || dropped);
        CHECK(accepted == 0 || dropped);
        return;
    }
    buf = copy_exact(out->p, out->len);
    n = zk_http_parse_response((const char *)buf, out->len, 0, &res, NULL);
    CHECK(n > 0);
    CHECK(m->head != ZK_EAGAIN); /* no answer to a head that is not complete */
    if (res.status == 101) {
        zk_str acc = zk_http_header_get(res.headers, res.header_count, "Sec-WebSocket-Accept");
        zk_str proto = zk_http_header_get(res.headers, res.header_count, "Sec-WebSocket-Protocol");
        int msgpack;
        CHECK(m->head > 0 && m->upgrade == ZK_OK);
        CHECK(accepted == 1);
        CHECK(acc.len == 28 && memcmp(acc.ptr, m->accept, 28) == 0);
        CHECK(zk_http_list_has(zk_http_header_get(res.headers, res.header_count, "Upgrade"), "websocket"));
        CHECK(zk_http_list_has(zk_http_header_get(res.headers, res.header_count, "Connection"), "upgrade"));
        if (m->protocol) CHECK(proto.len == strlen(m->protocol) && memcmp(proto.ptr, m->protocol, proto.len) == 0);
        else CHECK(proto.ptr == NULL);
        msgpack = m->protocol && strcmp(m->protocol, ZK_PROTOCOL_MSGPACK) == 0;
        /* what the server was sent of it: the input may end unsent */
        len = p->writes.n ? p->writes.s[p->writes.n - 1].at : 0;
        CHECK(len >= (size_t)m->head);
        model_frames(m, stream + m->head, len - (size_t)m->head, (size_t)m->head,
                     srv->opts.max_message ? srv->opts.max_message : ZK_WS_MAX_MESSAGE, msgpack);
        check_frames(m, p, (size_t)n, msgpack, may_cut);
    } else {
        zk_str cl = zk_http_header_get(res.headers, res.header_count, "Content-Length");
        size_t body = 0, i;
        CHECK(accepted == 0);
        CHECK(cl.len > 0 && cl.len < 10);
        for (i = 0; i < cl.len; i++) {
            CHECK(cl.ptr[i] >= '0' && cl.ptr[i] <= '9');
            body = body * 10 + (size_t)(cl.ptr[i] - '0');
        }
        CHECK((size_t)n + body == out->len); /* nothing after the refusal */
        if (m->head < 0) CHECK(res.status == 400 || res.status == 431 || res.status == 505);
        else if (m->upgrade == ZK_ENOTWS) CHECK(res.status == 426);
        else if (m->upgrade == ZK_EHANDSHAKE) CHECK(res.status == m->refuse_status);
        else CHECK(res.status == 400 || res.status == 403 || res.status == 404 || res.status == 503);
    }
    free(buf);
}

/* ---- setup ---- */

static void cleanup(void) {
    int i;
    while (nkept) answer_one(0, 1, 1);
    for (i = 0; i < NAPPS; i++) zk_app_free(apps[i]);
    zk_loop_free(loop);
    zk_router_free(router);
    CHECK(lib_live == 0);
}

static void setup(void) {
    static const char *const origins[] = {"https://ok.example"};
    zk_loop_opts lo;
    zk_route_opts ro;
    int i;
    memset(&lo, 0, sizeof lo);
    lo.virtual_clock = 1;
    lo.seed = 1;
    loop = zk_loop_new(&lo);
    router = zk_router_new();
    CHECK(loop && router);
    CHECK(zk_router_on(router, "echo", h_echo, NULL) == 0);
    memset(&ro, 0, sizeof ro);
    ro.input = &get_input;
    CHECK(zk_router_on(router, "users.get", h_echo, &ro) == 0);
    CHECK(zk_router_on(router, "jobs.slow", h_slow, NULL) == 0);
    ro.input = &room_input;
    CHECK(zk_router_on(router, "room.send", h_room_send, &ro) == 0);
    CHECK(zk_router_on(router, "room.leave", h_room_leave, &ro) == 0);
    CHECK(zk_router_on(router, "news", h_news, NULL) == 0);
    CHECK(zk_router_on(router, "bye", h_bye, NULL) == 0);
    CHECK(zk_router_on(router, "drop", h_drop, NULL) == 0);
    CHECK(zk_router_on(router, "__auth", h_auth, NULL) == 0);
    for (i = 0; i < NAPPS; i++) {
        zk_app_opts ao;
        int err = 1;
        memset(&ao, 0, sizeof ao);
        ao.router = router;
        ao.server.handshake_timeout_ms = HANDSHAKE_MS;
        ao.server.idle_timeout_ms = IDLE_MS;
        ao.server.pong_timeout_ms = PONG_MS;
        ao.server.close_timeout_ms = CLOSE_MS;
        ao.server.message_timeout_ms = MESSAGE_MS;
        ao.server.write_timeout_ms = WRITE_MS;
        ao.server.max_message = 1 << 16;
        ao.request_timeout_ms = REQUEST_MS;
        ao.auth_timeout_ms = AUTH_MS;
        ao.require_auth = i & 1;
        if (i == 2) {
            ao.server.max_message = 300;
            ao.server.write_high_water = 256;
            ao.server.write_limit = 4096;
            ao.rate_per_sec = 5;
            ao.rate_burst = 3;
            ao.max_rooms_per_conn = 2;
            ao.max_kept_per_conn = 2;
        } else if (i == 3) {
            ao.path = "/ws";
            ao.server.origins = origins;
            ao.server.origin_count = 1;
            ao.codecs = ZK_APP_MSGPACK;
        }
        apps[i] = zk_app_new(loop, &ao, &err);
        CHECK(apps[i] != NULL && err == 0);
    }
    atexit(cleanup);
}

/* ---- one input ---- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const zk_loopback_opts none;
    zk_loopback_opts lbo = none;
    const unsigned char *stream;
    size_t len, off = 0;
    unsigned cfg;
    int size_mode, time_mode, answer, linger, may_cut = 0, head_in_time = 0, nwrites = 0, i;
    uint64_t rng, r, start;
    zk_app *app;
    zk_server *srv;
    zk_conn *sc;
    zk_app_stats before, after;
    model m;
    peer p;

    if (!loop) setup();
    if (size < 2) return 0;
    cfg = data[0];
    rng = (uint64_t)data[1] * 0x100000001B3ull + 1;
    stream = data + 2;
    len = size - 2;
    app = apps[cfg & 3];
    srv = zk_app_server(app);
    size_mode = (cfg >> 2) & 3;
    time_mode = (cfg >> 4) & 3;
    answer = (cfg >> 6) & 1;
    linger = (cfg >> 7) & 1;
    r = rng_next(&rng);
    if ((r & 3) == 0) lbo.chunk = 1 + (size_t)((r >> 2) % 64);
    if (((r >> 8) & 3) == 0) {
        lbo.capacity = 512 + (size_t)((r >> 10) % 4096);
        may_cut = 1;
    }

    dropped = 0;
    memset(&m, 0, sizeof m);
    model_head(&m, stream, len, srv);
    zk_app_get_stats(app, &before);

    /* a loopback pair whose server end is a connection of the app, as
       zk_loopback_connect makes, and whose other end is ours */
    memset(&p, 0, sizeof p);
    p.pair = zk__lb_pair_new(loop, &lbo);
    CHECK(p.pair != NULL);
    sc = zk__server_conn(srv, 0);
    CHECK(sc != NULL);
    sc->stream = &p.pair->end[1].base;
    p.pair->end[1].base.conn = sc;
    p.end = &p.pair->end[0];
    start = zk_loop_now(loop);
    p.last_write = start;

    while (off < len && !server_end_closed(&p)) {
        size_t k = next_size(size_mode, &rng, nwrites++, len - off);
        if (k > len - off) k = len - off;
        peer_write(&p, stream + off, k, off);
        off += k;
        if (m.head > 0 && off >= (size_t)m.head && !head_in_time)
            head_in_time = zk_loop_now(loop) - start < HANDSHAKE_MS;
        p.stalled = may_cut && (rng_next(&rng) & 1);
        settle(&p);
        if (answer && nkept) {
            r = rng_next(&rng);
            answer_one((int)((r >> 1) % (uint64_t)nkept), (int)(r & 1), 0);
        }
        r = next_time(time_mode, &rng);
        if (r) advance(&p, r);
    }

    /* the end: EOF now, or silence past every deadline; then close */
    p.stalled = 0;
    settle(&p);
    if (linger) {
        for (i = 0; i < 10; i++) advance(&p, 1000);
    } else {
        zk__lb_shutdown(&p.end->base);
        settle(&p);
    }
    CHECK(server_end_closed(&p)); /* it read the EOF, or a deadline passed */
    CHECK(p.eof);
    zk__lb_close(&p.end->base); /* frees the pair */
    run_work();
    while (loop->heap_len && loop->heap[0]->due <= loop->now + CLOSE_MS + 1) {
        if (loop->heap[0]->due > loop->now) loop->now = loop->heap[0]->due;
        run_work();
    }
    loop->now += CLOSE_MS + 1;
    run_work();
    CHECK(zk_server_connections(srv) == 0);
    while (nkept) answer_one(0, (int)(rng_next(&rng) & 1), 1);
    run_work();

    zk_app_get_stats(app, &after);
    CHECK(after.connections == 0);
    CHECK(app->count == 0 && app->orphans == NULL);
    CHECK(zk_app_rooms(app, NULL, 0) == 0);
    CHECK(loop->heap_len == 0 && loop->work == NULL);

    check_output(&m, &p, stream, len, srv, head_in_time, may_cut, after.accepted - before.accepted);
    model_free(&m);
    free(p.out.p);
    free(p.writes.s);
    free(p.reads.s);
    CHECK(lib_live <= MAX_LIVE);
    return 0;
}
