/* Unit tests for the broker wire protocols, sans I/O: the Redis RESP2
   parser and command encoder (zk_resp_parse, zk_resp_command) and the NATS
   client protocol (zk_nats_parse, zk_nats_subject, zk_nats_pub/sub/unsub).
   Every parser input is also read as a stream cut at every point (and a
   byte at a time), each call on a copy placed against an unmapped page so
   an over-read crashes; every encoder runs at every capacity below what it
   needs, into a buffer that ends at an unmapped page. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS for test.h's guard pages under -std=c99 */
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"
#include "test.h"

#include <stdarg.h>

#define IN(lit) lit, sizeof(lit) - 1
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ---- */

/* A growing byte string (may hold NULs). */
typedef struct text {
    char *p;
    size_t len, cap;
} text;

static void text_add(text *t, const void *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->p = (char *)realloc(t->p, t->cap);
        if (!t->p) exit(2);
    }
    if (n) memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}
static void text_str(text *t, const char *s) { text_add(t, s, strlen(s)); }
static void text_rep(text *t, char c, size_t n) {
    while (n--) text_add(t, &c, 1);
}
static void text_fmt(text *t, const char *fmt, ...) {
    char tmp[128];
    int n;
    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) text_add(t, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}
static void text_free(text *t) {
    free(t->p);
    t->p = NULL;
    t->len = t->cap = 0;
}
static int text_eq(const text *a, const text *b) {
    return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

/* A view lies inside buf[0..len) (an empty one may sit at buf + len; an
   empty one may also be {NULL, 0}). */
static int inside(zk_str s, const void *buf, size_t len) {
    const char *b = (const char *)buf;
    if (!s.ptr) return s.len == 0;
    return s.ptr >= b && s.ptr <= b + len && s.len <= (size_t)(b + len - s.ptr);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* bytes[0..len) printable, for failure messages (at most 40 bytes shown). */
static const char *show(const void *bytes, size_t len) {
    static char out[4][200];
    static int which;
    char *o = out[which++ & 3];
    const unsigned char *b = (const unsigned char *)bytes;
    size_t i, at = 0;
    for (i = 0; i < len && i < 40; i++) {
        if (b[i] == '\r') at += (size_t)sprintf(o + at, "\\r");
        else if (b[i] == '\n') at += (size_t)sprintf(o + at, "\\n");
        else if (b[i] < 0x20 || b[i] >= 0x7f) at += (size_t)sprintf(o + at, "\\x%02X", b[i]);
        else o[at++] = (char)b[i];
    }
    if (i < len) at += (size_t)sprintf(o + at, "...");
    o[at] = '\0';
    return o;
}

/* Calls an encoder at every cap from 0 to need + 2, each into a buffer of
   exactly cap bytes (filled with 0x5A) ending at an unmapped page, so a
   write past cap crashes. Below need: ZK_ENOSPACE; from need on: want.
   need counts the NUL for zk_nats_subject (then checked too). Returns the
   wrong count. */
typedef int (*encode_fn)(char *out, size_t cap, const void *arg);

static int every_cap(encode_fn fn, const void *arg, const char *want, size_t want_len, size_t need) {
    static char filler[4096];
    size_t cap;
    int wrong = 0;
    memset(filler, 0x5A, sizeof filler);
    for (cap = 0; cap <= need + 2 && cap <= sizeof filler; cap++) {
        guard_buf b = guard_alloc(filler, cap);
        int rc = fn((char *)b.data, cap, arg);
        if (cap < need ? rc != ZK_ENOSPACE
                       : (rc != (int)want_len || memcmp(b.data, want, want_len) != 0 ||
                          (need > want_len && b.data[want_len] != '\0'))) {
            printf("  \"%s\" cap %zu (need %zu): %s\n", show(want, want_len), cap, need, zk_err_name(rc));
            wrong++;
        }
        guard_free(&b);
    }
    return wrong;
}

/* Views that were outside the parsed buffer, counted by the describers. */
static int views_outside;

/* ==================================================================== */
/* ---- RESP ---- */

static zk_resp_reply reply;

/* One expected item of a reply. */
typedef struct want_item {
    int type, depth;
    long long integer; /* INTEGER; ARRAY: count */
    const char *str;   /* SIMPLE, ERROR, BULK */
    size_t len;
} want_item;

#define W_S(type, depth, lit) {type, depth, 0, lit, sizeof(lit) - 1}
#define W_I(depth, v) {ZK_RESP_INTEGER, depth, v, NULL, 0}
#define W_A(depth, n) {ZK_RESP_ARRAY, depth, n, NULL, 0}
#define W_NIL(depth) {ZK_RESP_NIL, depth, 0, NULL, 0}

/* Parses in (on a guard page) and compares with want[]; the whole input
   must be one reply. Returns the number of mismatches (printed). */
static int resp_expect(const char *in, size_t len, const want_item *want, size_t n) {
    guard_buf g = guard_alloc(in, len);
    const char *b = (const char *)g.data;
    int rc = zk_resp_parse(b, len, 0, &reply), wrong = 0;
    size_t i;
    if (rc != (int)len || reply.count != n) {
        printf("  \"%s\": rc %d (want %zu), count %zu (want %zu)\n", show(in, len), rc, len, reply.count, n);
        guard_free(&g);
        return 1;
    }
    for (i = 0; i < n; i++) {
        const zk_resp_item *it = &reply.items[i];
        const want_item *w = &want[i];
        int bad = it->type != w->type || it->depth != w->depth;
        if (w->type == ZK_RESP_INTEGER || w->type == ZK_RESP_ARRAY)
            bad |= it->integer != (int64_t)w->integer;
        if (w->str)
            bad |= it->str.len != w->len || !inside(it->str, b, len) ||
                   (w->len && memcmp(it->str.ptr, w->str, w->len) != 0);
        if (bad) {
            printf("  \"%s\" item %zu: type %c depth %d int %lld len %zu, want %c %d %lld %zu\n",
                   show(in, len),
                   i, it->type, it->depth, (long long)it->integer, it->str.len, w->type, w->depth,
                   w->integer, w->len);
            wrong++;
        }
    }
    guard_free(&g);
    return wrong;
}

#define RESP_EXPECT(lit, ...)                                                                \
    do {                                                                                     \
        static const want_item w_[] = {__VA_ARGS__};                                        \
        CHECK_EQ_INT(resp_expect(IN(lit), w_, COUNT(w_)), 0);                                \
    } while (0)

/* Parses buf[0..len) on a guard page; only the code is kept. */
static int resp_code(const char *buf, size_t len, size_t max_bulk) {
    guard_buf g = guard_alloc(buf, len);
    int rc = zk_resp_parse((const char *)g.data, len, max_bulk, &reply);
    guard_free(&g);
    return rc;
}

/* Appends what a reply holds (contents, not addresses) to log. */
static void resp_describe(text *log, int rc, const zk_resp_reply *r, const void *buf, size_t len) {
    size_t i;
    text_fmt(log, "[%d:%zu", rc, r->count);
    for (i = 0; i < r->count; i++) {
        const zk_resp_item *it = &r->items[i];
        text_fmt(log, " %c%d", it->type, it->depth);
        if (it->type == ZK_RESP_INTEGER || it->type == ZK_RESP_ARRAY)
            text_fmt(log, "=%lld", (long long)it->integer);
        if (it->type == ZK_RESP_SIMPLE || it->type == ZK_RESP_ERROR || it->type == ZK_RESP_BULK) {
            if (!inside(it->str, buf, len)) views_outside++;
            text_fmt(log, "'%zu:", it->str.len);
            text_add(log, it->str.ptr, it->str.len);
        }
    }
    text_str(log, "]");
}

/* Reads bytes[0..len) as a stream delivered up to each of cuts[] in turn
   (the last cut is len): after each delivery, every complete reply is
   taken, each parse on a guard-page copy of the unread bytes. Logs each
   reply and the final code (ZK_EAGAIN, or the error that stopped it). */
static void resp_stream(const char *bytes, size_t len, const size_t *cuts, size_t ncuts,
                        size_t max_bulk, text *log) {
    size_t consumed = 0, c;
    int rc = ZK_EAGAIN;
    for (c = 0; c < ncuts; c++) {
        size_t delivered = cuts[c] < len ? cuts[c] : len;
        for (;;) {
            size_t n = delivered - consumed;
            guard_buf g = guard_alloc(bytes + consumed, n);
            rc = zk_resp_parse((const char *)g.data, n, max_bulk, &reply);
            if (rc > 0) {
                if ((size_t)rc > n) views_outside++; /* consumed more than it had */
                resp_describe(log, rc, &reply, g.data, n);
                consumed += (size_t)rc;
            }
            guard_free(&g);
            if (rc <= 0 || consumed > delivered) break;
        }
        if (rc != ZK_EAGAIN) break;
    }
    text_fmt(log, "<%d>", rc);
}

/* The stream read whole, cut at every point, and a byte at a time must
   give the same replies and the same end. Returns the wrong count. */
static int resp_every_split(const char *bytes, size_t len, size_t max_bulk) {
    text whole = {NULL, 0, 0};
    size_t s, *cuts = (size_t *)malloc((len + 1) * sizeof *cuts);
    int wrong = 0;
    cuts[0] = len;
    resp_stream(bytes, len, cuts, 1, max_bulk, &whole);
    for (s = 0; s <= len; s++) {
        text part = {NULL, 0, 0};
        cuts[0] = s;
        cuts[1] = len;
        resp_stream(bytes, len, cuts, 2, max_bulk, &part);
        if (!text_eq(&whole, &part)) {
            printf("  \"%s\" cut at %zu: %s\n    whole: %s\n", show(bytes, len), s, show(part.p, part.len),
                   show(whole.p, whole.len));
            wrong++;
        }
        text_free(&part);
    }
    for (s = 0; s < len; s++) cuts[s] = s + 1;
    if (len) {
        text part = {NULL, 0, 0};
        resp_stream(bytes, len, cuts, len, max_bulk, &part);
        if (!text_eq(&whole, &part)) {
            printf("  \"%s\" a byte at a time: %s\n", show(bytes, len), show(part.p, part.len));
            wrong++;
        }
        text_free(&part);
    }
    free(cuts);
    text_free(&whole);
    return wrong;
}

typedef struct input {
    const char *bytes;
    size_t len;
} input;

/* Complete replies, each alone. */
static const input resp_valid[] = {
    {IN("+OK\r\n")},
    {IN("+\r\n")},
    {IN("-ERR unknown command 'FOO', with args beginning with: \r\n")},
    {IN(":0\r\n")},
    {IN(":-9223372036854775808\r\n")},
    {IN(":9223372036854775807\r\n")},
    {IN("$0\r\n\r\n")},
    {IN("$-1\r\n")},
    {IN("$8\r\na\r\nb\0\xff\r\n\r\n")},
    {IN("*0\r\n")},
    {IN("*-1\r\n")},
    {IN("*3\r\n*2\r\n:1\r\n$1\r\na\r\n*0\r\n$-1\r\n")},
    {IN("*3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n$5\r\nhello\r\n")},
    {IN("*3\r\n$9\r\nsubscribe\r\n$4\r\nroom\r\n:1\r\n")},
    {IN("*4\r\n$8\r\npmessage\r\n$6\r\nroom.*\r\n$6\r\nroom.a\r\n$2\r\nhi\r\n")},
    {IN("*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:8\r\n")},
    {IN("*2\r\n*-1\r\n-WRONGTYPE x\r\n")},
};

/* ---- RESP: each type ---- */

TEST(resp_simple_and_error) {
    RESP_EXPECT("+OK\r\n", W_S(ZK_RESP_SIMPLE, 0, "OK"));
    RESP_EXPECT("+\r\n", W_S(ZK_RESP_SIMPLE, 0, ""));
    RESP_EXPECT("+hello world\r\n", W_S(ZK_RESP_SIMPLE, 0, "hello world"));
    RESP_EXPECT("-ERR unknown command 'FOO'\r\n", W_S(ZK_RESP_ERROR, 0, "ERR unknown command 'FOO'"));
    RESP_EXPECT("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
                W_S(ZK_RESP_ERROR, 0, "WRONGTYPE Operation against a key holding the wrong kind of value"));
}

TEST(resp_integers) {
    RESP_EXPECT(":0\r\n", W_I(0, 0));
    RESP_EXPECT(":1\r\n", W_I(0, 1));
    RESP_EXPECT(":-1\r\n", W_I(0, -1));
    RESP_EXPECT(":1000\r\n", W_I(0, 1000));
    RESP_EXPECT(":9223372036854775807\r\n", W_I(0, 9223372036854775807LL));
    RESP_EXPECT(":-9223372036854775808\r\n", W_I(0, -9223372036854775807LL - 1));
    RESP_EXPECT(":0009\r\n", W_I(0, 9));
    /* one past each end, and more digits */
    CHECK_EQ_INT(resp_code(IN(":9223372036854775808\r\n"), 0), ZK_EPROTO);
    CHECK_EQ_INT(resp_code(IN(":-9223372036854775809\r\n"), 0), ZK_EPROTO);
    CHECK_EQ_INT(resp_code(IN(":9999999999999999999\r\n"), 0), ZK_EPROTO);
    CHECK_EQ_INT(resp_code(IN(":18446744073709551616\r\n"), 0), ZK_EPROTO);
    CHECK_EQ_INT(resp_code(IN(":-18446744073709551616\r\n"), 0), ZK_EPROTO);
    CHECK_EQ_INT(resp_code(IN(":10000000000000000000\r\n"), 0), ZK_EPROTO);
}

TEST(resp_bulk) {
    RESP_EXPECT("$5\r\nhello\r\n", W_S(ZK_RESP_BULK, 0, "hello"));
    RESP_EXPECT("$0\r\n\r\n", W_S(ZK_RESP_BULK, 0, ""));
    RESP_EXPECT("$-1\r\n", W_NIL(0));
    /* binary: CR LF, NUL and 0xFF inside, and CR LF as the whole string */
    RESP_EXPECT("$8\r\na\r\nb\0\xff\r\n\r\n", W_S(ZK_RESP_BULK, 0, "a\r\nb\0\xff\r\n"));
    RESP_EXPECT("$2\r\n\r\n\r\n", W_S(ZK_RESP_BULK, 0, "\r\n"));
    RESP_EXPECT("$4\r\n$3\r\n\r\n", W_S(ZK_RESP_BULK, 0, "$3\r\n"));
    /* the empty bulk's view is inside the input, not NULL */
    CHECK_EQ_INT(zk_resp_parse(IN("$0\r\n\r\n"), 0, &reply), 6);
    CHECK(reply.items[0].str.ptr != NULL);
}

TEST(resp_arrays_in_pre_order) {
    RESP_EXPECT("*0\r\n", W_A(0, 0));
    RESP_EXPECT("*-1\r\n", W_NIL(0));
    RESP_EXPECT("*1\r\n:7\r\n", W_A(0, 1), W_I(1, 7));
    RESP_EXPECT("*3\r\n*2\r\n:1\r\n$1\r\na\r\n*0\r\n$-1\r\n",
                W_A(0, 3), W_A(1, 2), W_I(2, 1), W_S(ZK_RESP_BULK, 2, "a"), W_A(1, 0), W_NIL(1));
    RESP_EXPECT("*2\r\n*-1\r\n-WRONGTYPE x\r\n", W_A(0, 2), W_NIL(1), W_S(ZK_RESP_ERROR, 1, "WRONGTYPE x"));
    RESP_EXPECT("*2\r\n*2\r\n*1\r\n+a\r\n+b\r\n+c\r\n",
                W_A(0, 2), W_A(1, 2), W_A(2, 1), W_S(ZK_RESP_SIMPLE, 3, "a"), W_S(ZK_RESP_SIMPLE, 2, "b"),
                W_S(ZK_RESP_SIMPLE, 1, "c"));
    RESP_EXPECT("*4\r\n+s\r\n-e\r\n:-5\r\n$0\r\n\r\n",
                W_A(0, 4), W_S(ZK_RESP_SIMPLE, 1, "s"), W_S(ZK_RESP_ERROR, 1, "e"), W_I(1, -5),
                W_S(ZK_RESP_BULK, 1, ""));
    /* 8 arrays nested: the innermost element at depth 8 */
    RESP_EXPECT("*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:8\r\n",
                W_A(0, 1), W_A(1, 1), W_A(2, 1), W_A(3, 1), W_A(4, 1), W_A(5, 1), W_A(6, 1), W_A(7, 1),
                W_I(8, 8));
}

TEST(resp_pubsub_replies) {
    RESP_EXPECT("*3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n$5\r\nhello\r\n",
                W_A(0, 3), W_S(ZK_RESP_BULK, 1, "message"), W_S(ZK_RESP_BULK, 1, "room"),
                W_S(ZK_RESP_BULK, 1, "hello"));
    RESP_EXPECT("*3\r\n$9\r\nsubscribe\r\n$4\r\nroom\r\n:1\r\n",
                W_A(0, 3), W_S(ZK_RESP_BULK, 1, "subscribe"), W_S(ZK_RESP_BULK, 1, "room"), W_I(1, 1));
    RESP_EXPECT("*3\r\n$11\r\nunsubscribe\r\n$4\r\nroom\r\n:0\r\n",
                W_A(0, 3), W_S(ZK_RESP_BULK, 1, "unsubscribe"), W_S(ZK_RESP_BULK, 1, "room"), W_I(1, 0));
    RESP_EXPECT("*3\r\n$10\r\npsubscribe\r\n$6\r\nroom.*\r\n:2\r\n",
                W_A(0, 3), W_S(ZK_RESP_BULK, 1, "psubscribe"), W_S(ZK_RESP_BULK, 1, "room.*"), W_I(1, 2));
    RESP_EXPECT("*4\r\n$8\r\npmessage\r\n$6\r\nroom.*\r\n$6\r\nroom.a\r\n$2\r\nhi\r\n",
                W_A(0, 4), W_S(ZK_RESP_BULK, 1, "pmessage"), W_S(ZK_RESP_BULK, 1, "room.*"),
                W_S(ZK_RESP_BULK, 1, "room.a"), W_S(ZK_RESP_BULK, 1, "hi"));
    /* a message whose payload is binary and looks like RESP */
    RESP_EXPECT("*3\r\n$7\r\nmessage\r\n$1\r\nr\r\n$9\r\n*1\r\n:1\r\n\0\r\n",
                W_A(0, 3), W_S(ZK_RESP_BULK, 1, "message"), W_S(ZK_RESP_BULK, 1, "r"),
                W_S(ZK_RESP_BULK, 1, "*1\r\n:1\r\n\0"));
    /* the reply to PING while subscribed */
    RESP_EXPECT("*2\r\n$4\r\npong\r\n$0\r\n\r\n",
                W_A(0, 2), W_S(ZK_RESP_BULK, 1, "pong"), W_S(ZK_RESP_BULK, 1, ""));
}

TEST(resp_back_to_back_consumed) {
    static const char two[] = "*3\r\n$9\r\nsubscribe\r\n$4\r\nroom\r\n:1\r\n"
                              "*3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n$2\r\nhi\r\n";
    const size_t first = 33, second = sizeof two - 1 - 33;
    size_t i;
    CHECK_EQ_INT(zk_resp_parse(IN(two), 0, &reply), first);
    CHECK_EQ_INT(reply.count, 4);
    CHECK_EQ_INT(reply.items[3].integer, 1);
    CHECK_EQ_INT(zk_resp_parse(two + first, second, 0, &reply), second);
    CHECK_STR(reply.items[1].str, "message");
    CHECK_STR(reply.items[3].str, "hi");
    /* the next reply's first bytes do not change the first one */
    CHECK_EQ_INT(zk_resp_parse(two, first + 1, 0, &reply), first);
    CHECK_EQ_INT(zk_resp_parse(IN("+OK\r\n+OK\r\n"), 0, &reply), 5);
    CHECK_EQ_INT(zk_resp_parse(IN(":1\r\n:2"), 0, &reply), 4);
    /* every valid reply followed by every other: consumed is the first */
    for (i = 0; i < COUNT(resp_valid); i++) {
        size_t j;
        for (j = 0; j < COUNT(resp_valid); j++) {
            text t = {NULL, 0, 0};
            text_add(&t, resp_valid[i].bytes, resp_valid[i].len);
            text_add(&t, resp_valid[j].bytes, resp_valid[j].len);
            CHECK_EQ_INT(resp_code(t.p, t.len, 0), resp_valid[i].len);
            CHECK_EQ_INT(zk_resp_parse(t.p + resp_valid[i].len, resp_valid[j].len, 0, &reply),
                         resp_valid[j].len);
            text_free(&t);
        }
    }
}

TEST(resp_every_prefix_on_guard_page) {
    size_t i, k;
    int wrong = 0;
    for (i = 0; i < COUNT(resp_valid); i++) {
        const input *v = &resp_valid[i];
        text whole = {NULL, 0, 0};
        CHECK_EQ_INT(zk_resp_parse(v->bytes, v->len, 0, &reply), v->len);
        resp_describe(&whole, (int)v->len, &reply, v->bytes, v->len);
        for (k = 0; k <= v->len; k++) {
            guard_buf g = guard_alloc(v->bytes, k);
            int rc = zk_resp_parse((const char *)g.data, k, 0, &reply);
            if (k < v->len ? rc != ZK_EAGAIN : rc != (int)v->len) {
                printf("  \"%s\" prefix %zu: %s\n", show(v->bytes, v->len), k, zk_err_name(rc));
                wrong++;
            } else if (k == v->len) {
                text got = {NULL, 0, 0};
                resp_describe(&got, rc, &reply, g.data, k);
                if (!text_eq(&got, &whole)) wrong++;
                text_free(&got);
            }
            guard_free(&g);
        }
        text_free(&whole);
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(views_outside, 0);
    /* nothing at all */
    CHECK_EQ_INT(zk_resp_parse(NULL, 0, 0, &reply), ZK_EAGAIN);
    CHECK_EQ_INT(resp_code("", 0, 0), ZK_EAGAIN);
}

TEST(resp_every_split_of_a_stream) {
    text all = {NULL, 0, 0}, log = {NULL, 0, 0};
    size_t i;
    int wrong = 0;
    for (i = 0; i < COUNT(resp_valid); i++) {
        wrong += resp_every_split(resp_valid[i].bytes, resp_valid[i].len, 0);
        text_add(&all, resp_valid[i].bytes, resp_valid[i].len);
    }
    /* every reply back to back, then the same stream ended by garbage */
    wrong += resp_every_split(all.p, all.len, 0);
    {
        size_t cut = all.len;
        resp_stream(all.p, all.len, &cut, 1, 0, &log);
        CHECK(log.len > 4 && memcmp(log.p + log.len - 4, "<-1>", 4) == 0); /* ends waiting */
    }
    text_str(&all, "?bad\r\n");
    wrong += resp_every_split(all.p, all.len, 0);
    text_free(&log);
    {
        size_t cut = all.len;
        resp_stream(all.p, all.len, &cut, 1, 0, &log);
        CHECK(log.len > 4 && memcmp(log.p + log.len - 4, "<-9>", 4) == 0); /* ends with ZK_EPROTO */
    }
    /* and with a small max_bulk: the 8-byte bulk is refused */
    wrong += resp_every_split(all.p, all.len, 7);
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(views_outside, 0);
    text_free(&all);
    text_free(&log);
}

/* ---- RESP: errors ---- */

/* Every prefix on a guard page is ZK_EAGAIN or err (once err, always err);
   the whole input is err. Returns 1 when wrong (printed). */
static int check_bad(const char *bytes, size_t len, size_t max_bulk, int err, int nats) {
    size_t k;
    int refused = 0;
    for (k = 0; k <= len; k++) {
        guard_buf g = guard_alloc(bytes, k);
        zk_nats_op op;
        int rc = nats ? zk_nats_parse((const char *)g.data, k, max_bulk, &op)
                      : zk_resp_parse((const char *)g.data, k, max_bulk, &reply);
        guard_free(&g);
        if (rc == err) {
            refused = 1;
            continue;
        }
        if (rc != ZK_EAGAIN || refused || k == len) {
            printf("  \"%s\" prefix %zu of %zu: %s, expected %s\n", show(bytes, len), k, len,
                   zk_err_name(rc), zk_err_name(err));
            return 1;
        }
    }
    return 0;
}

typedef struct bad_input {
    const char *bytes;
    size_t len;
    int err;
} bad_input;

static const bad_input resp_bad[] = {
    /* type bytes that are not RESP2 (RESP3's among them) */
    {IN("?OK\r\n"), ZK_EPROTO},
    {IN("OK\r\n"), ZK_EPROTO},
    {IN(" +OK\r\n"), ZK_EPROTO},
    {IN("_\r\n"), ZK_EPROTO},
    {IN("#t\r\n"), ZK_EPROTO},
    {IN(",1.5\r\n"), ZK_EPROTO},
    {IN("%1\r\n"), ZK_EPROTO},
    {IN("~0\r\n"), ZK_EPROTO},
    {IN(">3\r\n"), ZK_EPROTO},
    {IN("!3\r\nerr\r\n"), ZK_EPROTO},
    {IN("=3\r\ntxt\r\n"), ZK_EPROTO},
    {IN("*1\r\n?\r\n"), ZK_EPROTO},
    {IN("*2\r\n:1\r\n#f\r\n"), ZK_EPROTO},
    /* a CR not followed by LF */
    {IN(":1\rX\r\n"), ZK_EPROTO},
    {IN("$1\rX\r\na\r\n"), ZK_EPROTO},
    {IN("*1\r:1\r\n"), ZK_EPROTO},
    {IN(":1\r\r\n"), ZK_EPROTO},
    {IN("*1\r\n:1\r:2\r\n"), ZK_EPROTO},
    /* a bulk whose declared length is not where its CR LF is */
    {IN("$5\r\nhi\r\n:1\r\n"), ZK_EPROTO},
    {IN("$2\r\nhello\r\n"), ZK_EPROTO},
    {IN("$2\r\nhiXY"), ZK_EPROTO},
    {IN("$2\r\nhi\rX"), ZK_EPROTO},
    {IN("$2\r\nhi\n\r"), ZK_EPROTO},
    {IN("$0\r\nX\r\n"), ZK_EPROTO},
    {IN("*2\r\n$1\r\nab\r\n:1\r\n"), ZK_EPROTO},
    /* numbers: signs, spaces, empties, other forms */
    {IN(":+1\r\n"), ZK_EPROTO},
    {IN("$+1\r\na\r\n"), ZK_EPROTO},
    {IN("*+1\r\n:1\r\n"), ZK_EPROTO},
    {IN(": 1\r\n"), ZK_EPROTO},
    {IN(":1 \r\n"), ZK_EPROTO},
    {IN(":1 2\r\n"), ZK_EPROTO},
    {IN(":- 1\r\n"), ZK_EPROTO},
    {IN("$ 1\r\na\r\n"), ZK_EPROTO},
    {IN("$1 \r\na\r\n"), ZK_EPROTO},
    {IN("*1 \r\n:1\r\n"), ZK_EPROTO},
    {IN("* 1\r\n:1\r\n"), ZK_EPROTO},
    {IN(":\t1\r\n"), ZK_EPROTO},
    {IN(":\r\n"), ZK_EPROTO},
    {IN(":-\r\n"), ZK_EPROTO},
    {IN(":--1\r\n"), ZK_EPROTO},
    {IN("$\r\n\r\n"), ZK_EPROTO},
    {IN("*\r\n"), ZK_EPROTO},
    {IN(":1.5\r\n"), ZK_EPROTO},
    {IN(":0x10\r\n"), ZK_EPROTO},
    {IN(":1e3\r\n"), ZK_EPROTO},
    {IN("$1.0\r\na\r\n"), ZK_EPROTO},
    {IN("$-2\r\n"), ZK_EPROTO},
    {IN("*-2\r\n"), ZK_EPROTO},
    {IN("$-10\r\n"), ZK_EPROTO},
    {IN(":1\x00\r\n"), ZK_EPROTO},
    /* limits that arrive in the header */
    {IN("*17\r\n"), ZK_ETOOBIG},
    {IN("*9223372036854775807\r\n"), ZK_ETOOBIG},
    {IN("$536870913\r\n"), ZK_ETOOBIG},
    {IN("$9223372036854775807\r\n"), ZK_ETOOBIG},
};

TEST(resp_malformed) {
    size_t i;
    int wrong = 0;
    for (i = 0; i < COUNT(resp_bad); i++)
        wrong += check_bad(resp_bad[i].bytes, resp_bad[i].len, 0, resp_bad[i].err, 0);
    CHECK_EQ_INT(wrong, 0);
    /* a bulk that may yet hold its CR LF is incomplete, not wrong: a
       5-byte payload may be "hi\r\n" and one more byte */
    CHECK_EQ_INT(resp_code(IN("$5\r\nhi\r\n"), 0), ZK_EAGAIN);
    CHECK_EQ_INT(resp_code(IN("$5\r\nhi\r\nX\r\n"), 0), 11);
    /* a CR at the very end waits for its LF */
    CHECK_EQ_INT(resp_code(IN("+OK\r"), 0), ZK_EAGAIN);
    CHECK_EQ_INT(resp_code(IN(":1\r"), 0), ZK_EAGAIN);
    /* NULL with a length */
    CHECK_EQ_INT(zk_resp_parse(NULL, 5, 0, &reply), ZK_EINVAL);
}

/* A CR not followed by LF inside a simple string or an error line is not
   RESP: ZK_EPROTO, not a size limit. */
TEST(resp_bare_cr_in_simple_string) {
    CHECK_EQ_INT(check_bad(IN("+O\rK\r\n"), 0, ZK_EPROTO, 0), 0);
    CHECK_EQ_INT(check_bad(IN("+OK\rX"), 0, ZK_EPROTO, 0), 0);
    CHECK_EQ_INT(check_bad(IN("-ERR\rx\r\n"), 0, ZK_EPROTO, 0), 0);
    CHECK_EQ_INT(check_bad(IN("*2\r\n+a\r\n+b\rc\r\n"), 0, ZK_EPROTO, 0), 0);
}

/* A first byte that is no RESP2 type can never start a reply: refused at
   once, not after its line ends (a server that sent "\r\n" and waits
   would otherwise leave the client waiting too). */
TEST(resp_bad_type_byte_refused_at_once) {
    CHECK_EQ_INT(resp_code(IN("?"), 0), ZK_EPROTO);
    CHECK_EQ_INT(resp_code(IN("\r\n"), 0), ZK_EPROTO);
    CHECK_EQ_INT(resp_code(IN("_\r\n"), 0), ZK_EPROTO);
    CHECK_EQ_INT(resp_code(IN("*2\r\n:1\r\n#"), 0), ZK_EPROTO);
}

TEST(resp_bulk_limit) {
    /* a custom limit: refused as soon as the header is complete */
    CHECK_EQ_INT(check_bad(IN("$11\r\n"), 10, ZK_ETOOBIG, 0), 0);
    CHECK_EQ_INT(check_bad(IN("$11\r\nhello world\r\n"), 10, ZK_ETOOBIG, 0), 0);
    CHECK_EQ_INT(resp_code(IN("$10\r\n"), 10), ZK_EAGAIN);
    CHECK_EQ_INT(resp_code(IN("$10\r\n0123456789\r\n"), 10), 17);
    CHECK_EQ_INT(resp_code(IN("$1\r\nx\r\n"), 1), 7);
    CHECK_EQ_INT(resp_code(IN("$2\r\nxy\r\n"), 1), ZK_ETOOBIG);
    CHECK_EQ_INT(resp_code(IN("*2\r\n$1\r\nx\r\n$2\r\nxy\r\n"), 1), ZK_ETOOBIG);
    /* nil and empty are under any limit */
    CHECK_EQ_INT(resp_code(IN("$-1\r\n"), 1), 5);
    CHECK_EQ_INT(resp_code(IN("$0\r\n\r\n"), 1), 6);
    /* the default: 512 MiB */
    CHECK_EQ_INT(resp_code(IN("$536870912\r\n"), 0), ZK_EAGAIN);
    CHECK_EQ_INT(resp_code(IN("$536870913\r\n"), 0), ZK_ETOOBIG);
}

/* "*n" followed by n copies of element. */
static void resp_array_of(text *t, size_t n, const char *element) {
    size_t i;
    text_fmt(t, "*%zu\r\n", n);
    for (i = 0; i < n; i++) text_str(t, element);
}

TEST(resp_item_limit) {
    text t = {NULL, 0, 0};
    size_t i;
    CHECK_EQ_INT(ZK_RESP_MAX_ITEMS, 16);
    /* 15 elements: 16 items, the most a reply holds */
    resp_array_of(&t, ZK_RESP_MAX_ITEMS - 1, ":1\r\n");
    CHECK_EQ_INT(resp_code(t.p, t.len, 0), t.len);
    CHECK_EQ_INT(reply.count, ZK_RESP_MAX_ITEMS);
    for (i = 1; i < reply.count; i++)
        CHECK(reply.items[i].type == ZK_RESP_INTEGER && reply.items[i].depth == 1);
    CHECK_EQ_INT(resp_every_split(t.p, t.len, 0), 0);
    text_free(&t);
    /* 16 elements: 17 items */
    resp_array_of(&t, ZK_RESP_MAX_ITEMS, "$1\r\nx\r\n");
    CHECK_EQ_INT(check_bad(t.p, t.len, 0, ZK_ETOOBIG, 0), 0);
    text_free(&t);
    /* more than 16 elements refused at the header */
    CHECK_EQ_INT(check_bad(IN("*17\r\n"), 0, ZK_ETOOBIG, 0), 0);
    CHECK_EQ_INT(check_bad(IN("*1000000\r\n"), 0, ZK_ETOOBIG, 0), 0);
    /* nested ones count: 1 + (1 + 8) + (1 + 8) = 19 */
    text_str(&t, "*2\r\n");
    resp_array_of(&t, 8, ":1\r\n");
    resp_array_of(&t, 8, ":2\r\n");
    CHECK_EQ_INT(check_bad(t.p, t.len, 0, ZK_ETOOBIG, 0), 0);
    text_free(&t);
    /* 1 + (1 + 7) + (1 + 6) = 16: fits */
    text_str(&t, "*2\r\n");
    resp_array_of(&t, 7, ":1\r\n");
    resp_array_of(&t, 6, "+x\r\n");
    CHECK_EQ_INT(resp_code(t.p, t.len, 0), t.len);
    CHECK_EQ_INT(reply.count, 16);
    CHECK_EQ_INT(reply.items[9].type, ZK_RESP_ARRAY);
    CHECK_EQ_INT(reply.items[9].depth, 1);
    CHECK_EQ_INT(reply.items[15].depth, 2);
    text_free(&t);
    /* empty arrays and nils are items too */
    resp_array_of(&t, 16, "*0\r\n");
    CHECK_EQ_INT(check_bad(t.p, t.len, 0, ZK_ETOOBIG, 0), 0);
    text_free(&t);
    resp_array_of(&t, 15, "$-1\r\n");
    CHECK_EQ_INT(resp_code(t.p, t.len, 0), t.len);
    text_free(&t);
}

TEST(resp_depth_limit) {
    text t = {NULL, 0, 0};
    int i;
    /* 8 nested arrays fit */
    for (i = 0; i < 8; i++) text_str(&t, "*1\r\n");
    text_str(&t, "+deep\r\n");
    CHECK_EQ_INT(resp_code(t.p, t.len, 0), t.len);
    CHECK_EQ_INT(reply.count, 9);
    CHECK_EQ_INT(reply.items[8].depth, 8);
    text_free(&t);
    /* 9 are refused, as soon as the ninth's header is complete */
    for (i = 0; i < 9; i++) text_str(&t, "*1\r\n");
    CHECK_EQ_INT(check_bad(t.p, t.len, 0, ZK_ETOOBIG, 0), 0);
    text_str(&t, ":1\r\n");
    CHECK_EQ_INT(check_bad(t.p, t.len, 0, ZK_ETOOBIG, 0), 0);
    text_free(&t);
    for (i = 0; i < 9; i++) text_str(&t, "*2\r\n");
    CHECK_EQ_INT(check_bad(t.p, t.len, 0, ZK_ETOOBIG, 0), 0);
    text_free(&t);
    /* 8 deep, closed, then 8 deep again in the same reply */
    text_str(&t, "*2\r\n");
    for (i = 0; i < 7; i++) text_str(&t, "*1\r\n");
    text_str(&t, ":1\r\n*1\r\n:2\r\n");
    CHECK_EQ_INT(resp_code(t.p, t.len, 0), t.len);
    CHECK_EQ_INT(reply.count, 11);
    CHECK_EQ_INT(reply.items[8].depth, 8);
    CHECK_EQ_INT(reply.items[9].depth, 1);
    CHECK_EQ_INT(reply.items[10].depth, 2);
    text_free(&t);
}

TEST(resp_line_limits) {
    text t = {NULL, 0, 0};
    guard_buf g;
    /* a simple string of 64 KiB is fine; one byte more is too big */
    text_str(&t, "+");
    text_rep(&t, 'a', 65536);
    CHECK_EQ_INT(resp_code(t.p, t.len, 0), ZK_EAGAIN); /* no CR yet */
    text_str(&t, "\r\n");
    CHECK_EQ_INT(resp_code(t.p, t.len, 0), t.len);
    CHECK_EQ_INT(reply.items[0].str.len, 65536);
    text_free(&t);
    text_str(&t, "-");
    text_rep(&t, 'e', 65536);
    text_str(&t, "\r\n");
    CHECK_EQ_INT(resp_code(t.p, t.len, 0), t.len);
    CHECK_EQ_INT(reply.items[0].type, ZK_RESP_ERROR);
    text_free(&t);
    text_str(&t, "+");
    text_rep(&t, 'a', 65537);
    CHECK_EQ_INT(resp_code(t.p, t.len, 0), ZK_ETOOBIG); /* refused before the CR comes */
    CHECK_EQ_INT(resp_code(t.p, t.len - 1, 0), ZK_EAGAIN);
    text_str(&t, "\r\n");
    CHECK_EQ_INT(resp_code(t.p, t.len, 0), ZK_ETOOBIG);
    text_free(&t);
    text_str(&t, "*1\r\n-");
    text_rep(&t, 'e', 70000);
    CHECK_EQ_INT(resp_code(t.p, t.len, 0), ZK_ETOOBIG);
    text_free(&t);
    /* a header line (':', '$', '*') of 32 bytes may still end; 33 may not */
    text_str(&t, ":");
    text_rep(&t, '1', 32);
    CHECK_EQ_INT(resp_code(t.p, t.len, 0), ZK_EAGAIN);
    text_str(&t, "1");
    CHECK_EQ_INT(resp_code(t.p, t.len, 0), ZK_EPROTO);
    text_free(&t);
    text_str(&t, "$");
    text_rep(&t, '0', 40);
    text_str(&t, "1\r\nx\r\n");
    CHECK_EQ_INT(check_bad(t.p, t.len, 0, ZK_EPROTO, 0), 0);
    text_free(&t);
    text_str(&t, "*1\r\n*");
    text_rep(&t, ' ', 33);
    CHECK_EQ_INT(resp_code(t.p, t.len, 0), ZK_EPROTO);
    text_free(&t);
    /* the longest simple string against the guard page, and its prefixes
       near the limit */
    text_str(&t, "+");
    text_rep(&t, 'z', 65536);
    text_str(&t, "\r\n");
    g = guard_alloc(t.p, t.len);
    CHECK_EQ_INT(zk_resp_parse((const char *)g.data, t.len, 0, &reply), t.len);
    guard_free(&g);
    {
        size_t k;
        int wrong = 0;
        for (k = t.len - 4; k < t.len; k++) wrong += resp_code(t.p, k, 0) != ZK_EAGAIN;
        CHECK_EQ_INT(wrong, 0);
    }
    text_free(&t);
}

/* ---- RESP: commands ---- */

typedef struct command_arg {
    size_t argc;
    const zk_str *argv;
} command_arg;

static int call_command(char *out, size_t cap, const void *arg) {
    const command_arg *a = (const command_arg *)arg;
    return zk_resp_command(out, cap, a->argc, a->argv);
}

TEST(resp_command_exact_bytes) {
    static const zk_str publish[] = {ZK_STR("PUBLISH"), ZK_STR("room"), ZK_STR("hello")};
    static const zk_str subscribe[] = {ZK_STR("SUBSCRIBE"), ZK_STR("a"), ZK_STR("b.c")};
    static const zk_str ping[] = {ZK_STR("PING")};
    static const zk_str empty[] = {ZK_STR("SET"), ZK_STR(""), {NULL, 0}};
    static const zk_str binary[] = {ZK_STR("PUBLISH"), ZK_STR("r"), {"\r\n\0\xff$3\r\n", 8}};
    static const struct {
        size_t argc;
        const zk_str *argv;
        const char *want;
        size_t len;
    } v[] = {
        {3, publish, IN("*3\r\n$7\r\nPUBLISH\r\n$4\r\nroom\r\n$5\r\nhello\r\n")},
        {3, subscribe, IN("*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$3\r\nb.c\r\n")},
        {1, ping, IN("*1\r\n$4\r\nPING\r\n")},
        {3, empty, IN("*3\r\n$3\r\nSET\r\n$0\r\n\r\n$0\r\n\r\n")},
        {3, binary, IN("*3\r\n$7\r\nPUBLISH\r\n$1\r\nr\r\n$8\r\n\r\n\0\xff$3\r\n\r\n")},
        {0, NULL, IN("*0\r\n")},
    };
    size_t i, j;
    for (i = 0; i < COUNT(v); i++) {
        char out[128];
        int n = zk_resp_command(out, sizeof out, v[i].argc, v[i].argv);
        CHECK_EQ_INT(n, v[i].len);
        CHECK_MEM(out, n > 0 ? (size_t)n : 0, v[i].want, v[i].len);
        /* it parses back as an array of those bulk strings */
        CHECK_EQ_INT(zk_resp_parse(out, (size_t)n, 0, &reply), n);
        CHECK_EQ_INT(reply.count, v[i].argc + 1);
        CHECK_EQ_INT(reply.items[0].type, ZK_RESP_ARRAY);
        CHECK_EQ_INT(reply.items[0].integer, v[i].argc);
        for (j = 0; j < v[i].argc; j++) {
            const zk_str *got = &reply.items[j + 1].str;
            CHECK_EQ_INT(reply.items[j + 1].type, ZK_RESP_BULK);
            CHECK_MEM(got->ptr, got->len, v[i].argv[j].ptr ? v[i].argv[j].ptr : "", v[i].argv[j].len);
        }
        {
            command_arg a;
            a.argc = v[i].argc;
            a.argv = v[i].argv;
            CHECK_EQ_INT(every_cap(call_command, &a, v[i].want, v[i].len, v[i].len), 0);
        }
    }
}

TEST(resp_command_large_argument) {
    text arg = {NULL, 0, 0}, want = {NULL, 0, 0};
    zk_str argv[2];
    char *out;
    int n;
    text_rep(&arg, 'q', 100000);
    argv[0] = zk_str_c("ECHO");
    argv[1].ptr = arg.p;
    argv[1].len = arg.len;
    text_str(&want, "*2\r\n$4\r\nECHO\r\n$100000\r\n");
    text_add(&want, arg.p, arg.len);
    text_str(&want, "\r\n");
    out = (char *)malloc(want.len);
    n = zk_resp_command(out, want.len, 2, argv);
    CHECK_EQ_INT(n, want.len);
    CHECK_MEM(out, (size_t)n, want.p, want.len);
    CHECK_EQ_INT(zk_resp_command(out, want.len - 1, 2, argv), ZK_ENOSPACE);
    CHECK_EQ_INT(zk_resp_command(out, want.len - 2, 2, argv), ZK_ENOSPACE);
    CHECK_EQ_INT(zk_resp_command(out, 20, 2, argv), ZK_ENOSPACE);
    free(out);
    text_free(&arg);
    text_free(&want);
}

/* ==================================================================== */
/* ---- NATS ---- */

static zk_nats_op op;

static int nats_code(const char *buf, size_t len, size_t max_payload) {
    guard_buf g = guard_alloc(buf, len);
    int rc = zk_nats_parse((const char *)g.data, len, max_payload, &op);
    guard_free(&g);
    return rc;
}

static void nats_describe(text *log, int rc, const zk_nats_op *o, const void *buf, size_t len) {
    text_fmt(log, "[%d:%d", rc, o->type);
    if (!inside(o->subject, buf, len) || !inside(o->reply, buf, len) || !inside(o->payload, buf, len) ||
        !inside(o->text, buf, len))
        views_outside++;
    if (o->type == ZK_NATS_MSG) {
        text_fmt(log, " s%zu:", o->subject.len);
        text_add(log, o->subject.ptr, o->subject.len);
        text_fmt(log, " r%zu:", o->reply.len);
        text_add(log, o->reply.ptr, o->reply.len);
        text_fmt(log, " i%llu p%zu:", (unsigned long long)o->sid, o->payload.len);
        text_add(log, o->payload.ptr, o->payload.len);
    }
    if (o->type == ZK_NATS_INFO || o->type == ZK_NATS_ERR) {
        text_fmt(log, " t%zu:", o->text.len);
        text_add(log, o->text.ptr, o->text.len);
    }
    text_str(log, "]");
}

static void nats_stream(const char *bytes, size_t len, const size_t *cuts, size_t ncuts,
                        size_t max_payload, text *log) {
    size_t consumed = 0, c;
    int rc = ZK_EAGAIN;
    for (c = 0; c < ncuts; c++) {
        size_t delivered = cuts[c] < len ? cuts[c] : len;
        for (;;) {
            size_t n = delivered - consumed;
            guard_buf g = guard_alloc(bytes + consumed, n);
            rc = zk_nats_parse((const char *)g.data, n, max_payload, &op);
            if (rc > 0) {
                if ((size_t)rc > n) views_outside++;
                nats_describe(log, rc, &op, g.data, n);
                consumed += (size_t)rc;
            }
            guard_free(&g);
            if (rc <= 0 || consumed > delivered) break;
        }
        if (rc != ZK_EAGAIN) break;
    }
    text_fmt(log, "<%d>", rc);
}

static int nats_every_split(const char *bytes, size_t len, size_t max_payload) {
    text whole = {NULL, 0, 0};
    size_t s, *cuts = (size_t *)malloc((len + 1) * sizeof *cuts);
    int wrong = 0;
    cuts[0] = len;
    nats_stream(bytes, len, cuts, 1, max_payload, &whole);
    for (s = 0; s <= len; s++) {
        text part = {NULL, 0, 0};
        cuts[0] = s;
        cuts[1] = len;
        nats_stream(bytes, len, cuts, 2, max_payload, &part);
        if (!text_eq(&whole, &part)) {
            printf("  \"%s\" cut at %zu: %s\n    whole: %s\n", show(bytes, len), s, show(part.p, part.len),
                   show(whole.p, whole.len));
            wrong++;
        }
        text_free(&part);
    }
    for (s = 0; s < len; s++) cuts[s] = s + 1;
    if (len) {
        text part = {NULL, 0, 0};
        nats_stream(bytes, len, cuts, len, max_payload, &part);
        if (!text_eq(&whole, &part)) {
            printf("  \"%s\" a byte at a time: %s\n", show(bytes, len), show(part.p, part.len));
            wrong++;
        }
        text_free(&part);
    }
    free(cuts);
    text_free(&whole);
    return wrong;
}

static const input nats_valid[] = {
    {IN("INFO {\"server_id\":\"NCX\",\"version\":\"2.10.7\",\"max_payload\":1048576,\"headers\":true}\r\n")},
    {IN("info {}\r\n")},
    {IN("MSG room.lobby 9 5\r\nhello\r\n")},
    {IN("MSG room.lobby 9 _INBOX.abc.1 5\r\nhello\r\n")},
    {IN("MSG a 1 0\r\n\r\n")},
    {IN("MSG a 1 4\r\n\r\n\r\n\r\n")},
    {IN("msg \t a\t 7 \t2  \r\nhi\r\n")},
    {IN("Msg x.y 18446744073 r 3\r\n\0\xff\r\r\n")},
    {IN("PING\r\n")},
    {IN("PONG\r\n")},
    {IN("Ping\r\n")},
    {IN("pong \t\r\n")},
    {IN("+OK\r\n")},
    {IN("+ok\r\n")},
    {IN("-ERR 'Unknown Protocol Operation'\r\n")},
    {IN("-ERR 'Authorization Violation'  \r\n")},
    {IN("-err\r\n")},
};

TEST(nats_info) {
    static const char in[] = "INFO {\"server_id\":\"NCX\",\"max_payload\":1048576}\r\n";
    CHECK_EQ_INT(zk_nats_parse(IN(in), 0, &op), sizeof in - 1);
    CHECK_EQ_INT(op.type, ZK_NATS_INFO);
    CHECK_STR(op.text, "{\"server_id\":\"NCX\",\"max_payload\":1048576}");
    CHECK(inside(op.text, in, sizeof in - 1));
    CHECK_EQ_INT(zk_nats_parse(IN("info \t {\"a\":1}\r\n"), 0, &op), 16);
    CHECK_EQ_INT(op.type, ZK_NATS_INFO);
    CHECK_STR(op.text, "{\"a\":1}");
    CHECK_EQ_INT(zk_nats_parse(IN("InFo {}\r\nPING\r\n"), 0, &op), 9);
    CHECK_STR(op.text, "{}");
}

TEST(nats_long_info) {
    text t = {NULL, 0, 0};
    /* a line of 64 KiB exactly: fine */
    text_str(&t, "INFO {\"x\":\"");
    text_rep(&t, 'x', 65536 - 11 - 2);
    text_str(&t, "\"}");
    CHECK_EQ_INT(t.len, 65536);
    CHECK_EQ_INT(nats_code(t.p, t.len, 0), ZK_EAGAIN);
    text_str(&t, "\r\n");
    CHECK_EQ_INT(nats_code(t.p, t.len, 0), t.len);
    CHECK_EQ_INT(op.type, ZK_NATS_INFO);
    CHECK_EQ_INT(op.text.len, 65536 - 5);
    text_free(&t);
    /* one byte more: too big, with or without its end */
    text_str(&t, "INFO {\"x\":\"");
    text_rep(&t, 'x', 65536 - 11 - 1);
    text_str(&t, "\"}");
    CHECK_EQ_INT(nats_code(t.p, t.len, 0), ZK_ETOOBIG);
    CHECK_EQ_INT(nats_code(t.p, t.len - 1, 0), ZK_EAGAIN);
    text_str(&t, "\r\n");
    CHECK_EQ_INT(nats_code(t.p, t.len, 0), ZK_ETOOBIG);
    text_free(&t);
    /* INFO between 4 and 64 KiB, lower case, then PING */
    text_str(&t, "info {\"connect_urls\":[\"");
    text_rep(&t, '1', 10000);
    text_str(&t, "\"]}\r\nPING\r\n");
    CHECK_EQ_INT(nats_code(t.p, t.len, 0), t.len - 6);
    CHECK_EQ_INT(nats_every_split(t.p, t.len, 0), 0);
    text_free(&t);
}

TEST(nats_msg) {
    static const char in[] = "MSG room.lobby 9 5\r\nhello\r\n";
    CHECK_EQ_INT(zk_nats_parse(IN(in), 0, &op), sizeof in - 1);
    CHECK_EQ_INT(op.type, ZK_NATS_MSG);
    CHECK_STR(op.subject, "room.lobby");
    CHECK_EQ_INT(op.reply.len, 0);
    CHECK_EQ_INT(op.sid, 9);
    CHECK_STR(op.payload, "hello");
    CHECK(op.payload.ptr == in + 20);
    /* with a reply subject */
    CHECK_EQ_INT(zk_nats_parse(IN("MSG a.b 12 _INBOX.x.y 3\r\nabc\r\n"), 0, &op), 30);
    CHECK_EQ_INT(op.type, ZK_NATS_MSG);
    CHECK_STR(op.subject, "a.b");
    CHECK_STR(op.reply, "_INBOX.x.y");
    CHECK_EQ_INT(op.sid, 12);
    CHECK_STR(op.payload, "abc");
    /* zero-length payload: its view is inside the buffer */
    {
        static const char z[] = "MSG a 1 0\r\n\r\n";
        CHECK_EQ_INT(zk_nats_parse(IN(z), 0, &op), 13);
        CHECK_EQ_INT(op.payload.len, 0);
        CHECK(op.payload.ptr == z + 11);
    }
    /* a payload holding CR LF, a control line and NUL */
    CHECK_EQ_INT(zk_nats_parse(IN("MSG a 1 12\r\nx\r\nPING\r\n\0\r\n\r\n"), 0, &op), 26);
    CHECK_MEM(op.payload.ptr, op.payload.len, "x\r\nPING\r\n\0\r\n", 12);
    CHECK_EQ_INT(zk_nats_parse(IN("MSG a 1 2\r\n\r\n\r\n"), 0, &op), 15);
    CHECK_STR(op.payload, "\r\n");
    /* case, spaces and tabs */
    CHECK_EQ_INT(zk_nats_parse(IN("msg a 1 1\r\nx\r\n"), 0, &op), 14);
    CHECK_EQ_INT(op.type, ZK_NATS_MSG);
    CHECK_EQ_INT(zk_nats_parse(IN("mSg\t\ta  \t 2\t\tr   1 \t\r\ny\r\n"), 0, &op), 25);
    CHECK_STR(op.subject, "a");
    CHECK_EQ_INT(op.sid, 2);
    CHECK_STR(op.reply, "r");
    CHECK_STR(op.payload, "y");
}

TEST(nats_sid) {
    CHECK_EQ_INT(zk_nats_parse(IN("MSG a 0 0\r\n\r\n"), 0, &op), 13);
    CHECK_EQ_INT(op.sid, 0);
    CHECK_EQ_INT(zk_nats_parse(IN("MSG a 007 0\r\n\r\n"), 0, &op), 15);
    CHECK_EQ_INT(op.sid, 7);
    CHECK_EQ_INT(zk_nats_parse(IN("MSG a 9223372036854775807 0\r\n\r\n"), 0, &op), 31);
    CHECK(op.sid == 9223372036854775807ull);
    CHECK_EQ_INT(nats_code(IN("MSG a x 0\r\n\r\n"), 0), ZK_EPROTO);
    CHECK_EQ_INT(nats_code(IN("MSG a 1x 0\r\n\r\n"), 0), ZK_EPROTO);
    CHECK_EQ_INT(nats_code(IN("MSG a -1 0\r\n\r\n"), 0), ZK_EPROTO);
    CHECK_EQ_INT(nats_code(IN("MSG a +1 0\r\n\r\n"), 0), ZK_EPROTO);
    CHECK_EQ_INT(nats_code(IN("MSG a 18446744073709551616 0\r\n\r\n"), 0), ZK_EPROTO);
}

/* Sizes and sids are digits: a sign is refused, "-0" included. */
TEST(nats_sign_in_numbers) {
    CHECK_EQ_INT(check_bad(IN("MSG a 1 -0\r\n\r\n"), 0, ZK_EPROTO, 1), 0);
    CHECK_EQ_INT(check_bad(IN("MSG a 1 r -0\r\n\r\n"), 0, ZK_EPROTO, 1), 0);
    CHECK_EQ_INT(check_bad(IN("MSG a -0 0\r\n\r\n"), 0, ZK_EPROTO, 1), 0);
    CHECK_EQ_INT(check_bad(IN("MSG a 1 +0\r\n\r\n"), 0, ZK_EPROTO, 1), 0);
}

/* op.sid is a uint64_t and zk_nats_sub writes any uint64_t: a MSG for the
   largest sid (the one zk_nats_sub wrote) must parse. */
TEST(nats_sid_round_trip_uint64) {
    static const uint64_t sids[] = {0, 1, 9223372036854775807ull, 9223372036854775808ull,
                                    18446744073709551615ull};
    size_t i;
    for (i = 0; i < COUNT(sids); i++) {
        char sub[64], msg[96];
        int n = zk_nats_sub(sub, sizeof sub, zk_str_c("a"), sids[i]), m;
        CHECK(n > 0);
        m = snprintf(msg, sizeof msg, "MSG a %.*s 0\r\n\r\n", n - 8, sub + 6);
        CHECK_EQ_INT(zk_nats_parse(msg, (size_t)m, 0, &op), m);
        CHECK(op.sid == sids[i]);
    }
}

TEST(nats_ping_pong_ok_err) {
    CHECK_EQ_INT(zk_nats_parse(IN("PING\r\n"), 0, &op), 6);
    CHECK_EQ_INT(op.type, ZK_NATS_PING);
    CHECK_EQ_INT(zk_nats_parse(IN("PONG\r\n"), 0, &op), 6);
    CHECK_EQ_INT(op.type, ZK_NATS_PONG);
    CHECK_EQ_INT(zk_nats_parse(IN("Ping\r\n"), 0, &op), 6);
    CHECK_EQ_INT(op.type, ZK_NATS_PING);
    CHECK_EQ_INT(zk_nats_parse(IN("pOnG\r\n"), 0, &op), 6);
    CHECK_EQ_INT(op.type, ZK_NATS_PONG);
    CHECK_EQ_INT(zk_nats_parse(IN("PING \t\r\n"), 0, &op), 8);
    CHECK_EQ_INT(op.type, ZK_NATS_PING);
    CHECK_EQ_INT(zk_nats_parse(IN("+OK\r\n"), 0, &op), 5);
    CHECK_EQ_INT(op.type, ZK_NATS_OK);
    CHECK_EQ_INT(zk_nats_parse(IN("+ok\r\n"), 0, &op), 5);
    CHECK_EQ_INT(op.type, ZK_NATS_OK);
    CHECK_EQ_INT(zk_nats_parse(IN("-ERR 'Unknown Protocol Operation'\r\n"), 0, &op), 35);
    CHECK_EQ_INT(op.type, ZK_NATS_ERR);
    CHECK_STR(op.text, "Unknown Protocol Operation");
    CHECK_EQ_INT(zk_nats_parse(IN("-ERR 'Stale Connection' \t\r\n"), 0, &op), 27);
    CHECK_STR(op.text, "Stale Connection");
    CHECK_EQ_INT(zk_nats_parse(IN("-err 'Permissions Violation for Publish to \"a.b\"'\r\n"), 0, &op), 51);
    CHECK_STR(op.text, "Permissions Violation for Publish to \"a.b\"");
    CHECK_EQ_INT(zk_nats_parse(IN("-ERR ''\r\n"), 0, &op), 9);
    CHECK_EQ_INT(op.type, ZK_NATS_ERR);
    CHECK_EQ_INT(op.text.len, 0);
    CHECK_EQ_INT(zk_nats_parse(IN("-ERR no quotes\r\n"), 0, &op), 16);
    CHECK_STR(op.text, "no quotes");
    CHECK_EQ_INT(zk_nats_parse(IN("-ERR\r\n"), 0, &op), 6);
    CHECK_EQ_INT(op.type, ZK_NATS_ERR);
    CHECK_EQ_INT(op.text.len, 0);
}

static const bad_input nats_bad[] = {
    {IN("HMSG a 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"), ZK_EPROTO},
    {IN("hmsg a 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"), ZK_EPROTO},
    {IN("FOO\r\n"), ZK_EPROTO},
    {IN("PUB a 1\r\nx\r\n"), ZK_EPROTO},
    {IN("SUB a 1\r\n"), ZK_EPROTO},
    {IN("CONNECT {}\r\n"), ZK_EPROTO},
    {IN(" \r\n"), ZK_EPROTO},
    {IN(" PING\r\n"), ZK_EPROTO},
    {IN("PINGX\r\n"), ZK_EPROTO},
    {IN("PIN\r\n"), ZK_EPROTO},
    {IN("PING x\r\n"), ZK_EPROTO},
    {IN("PONG 1\r\n"), ZK_EPROTO},
    {IN("+OK x\r\n"), ZK_EPROTO},
    {IN("+OKAY\r\n"), ZK_EPROTO},
    {IN("OK\r\n"), ZK_EPROTO},
    {IN("INFO\r\n"), ZK_EPROTO},
    {IN("INFO \t \r\n"), ZK_EPROTO},
    {IN("INFOX {}\r\n"), ZK_EPROTO},
    {IN("-ERRX\r\n"), ZK_EPROTO},
    {IN("MSG\r\n"), ZK_EPROTO},
    {IN("MSG a\r\n"), ZK_EPROTO},
    {IN("MSG a 1\r\n"), ZK_EPROTO},
    {IN("MSG a 1 r x 3\r\nabc\r\n"), ZK_EPROTO},
    {IN("MSG a 1 r x y 3\r\nabc\r\n"), ZK_EPROTO},
    {IN("MSGa 1 3\r\nabc\r\n"), ZK_EPROTO},
    {IN("MSG a 1 -1\r\n"), ZK_EPROTO},
    {IN("MSG a 1 +3\r\nabc\r\n"), ZK_EPROTO},
    {IN("MSG a 1 x\r\n"), ZK_EPROTO},
    {IN("MSG a 1 3x\r\nabc\r\n"), ZK_EPROTO},
    {IN("MSG a 1 0x3\r\nabc\r\n"), ZK_EPROTO},
    {IN("MSG a 1 1.5\r\nabc\r\n"), ZK_EPROTO},
    {IN("MSG a 1 99999999999999999999\r\n"), ZK_EPROTO},
    {IN("MSG a x 3\r\nabc\r\n"), ZK_EPROTO},
    {IN("MSG a 1 3\r\nabcXY"), ZK_EPROTO},
    {IN("MSG a 1 3\r\nabcd\r\n"), ZK_EPROTO},
    {IN("MSG a 1 3\r\nab\r\nX"), ZK_EPROTO},
    {IN("MSG a 1 3\r\nabc\n\r"), ZK_EPROTO},
    {IN("MSG a 1 3\r\nabc\rX"), ZK_EPROTO},
    {IN("MSG a 1 0\r\nX\r\n"), ZK_EPROTO},
    {IN("PI\rNG\r\n"), ZK_EPROTO},
    {IN("PING\r\r\n"), ZK_EPROTO},
    {IN("MSG a 1 3\rX\nabc\r\n"), ZK_EPROTO},
    {IN("MSG a 1 1048577\r\n"), ZK_ETOOBIG},
    {IN("MSG a 1 r 9223372036854775807\r\n"), ZK_ETOOBIG},
};

TEST(nats_malformed) {
    size_t i;
    int wrong = 0;
    for (i = 0; i < COUNT(nats_bad); i++)
        wrong += check_bad(nats_bad[i].bytes, nats_bad[i].len, 0, nats_bad[i].err, 1);
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(zk_nats_parse(NULL, 0, 0, &op), ZK_EAGAIN);
    CHECK_EQ_INT(zk_nats_parse(NULL, 4, 0, &op), ZK_EINVAL);
    /* a CR at the very end waits for its LF; so does a payload short of
       its CR LF */
    CHECK_EQ_INT(nats_code(IN("PING\r"), 0), ZK_EAGAIN);
    CHECK_EQ_INT(nats_code(IN("MSG a 1 3\r\nabc\r"), 0), ZK_EAGAIN);
}

TEST(nats_payload_limit) {
    text t = {NULL, 0, 0};
    /* refused as soon as the control line is complete */
    CHECK_EQ_INT(check_bad(IN("MSG a 1 11\r\nhello world\r\n"), 10, ZK_ETOOBIG, 1), 0);
    CHECK_EQ_INT(check_bad(IN("MSG a 1 r 11\r\n"), 10, ZK_ETOOBIG, 1), 0);
    CHECK_EQ_INT(nats_code(IN("MSG a 1 10\r\n"), 10), ZK_EAGAIN);
    CHECK_EQ_INT(nats_code(IN("MSG a 1 10\r\n0123456789\r\n"), 10), 24);
    CHECK_EQ_INT(nats_code(IN("MSG a 1 0\r\n\r\n"), 1), 13);
    /* the default: 1 MiB */
    CHECK_EQ_INT(nats_code(IN("MSG a 1 1048576\r\n"), 0), ZK_EAGAIN);
    CHECK_EQ_INT(nats_code(IN("MSG a 1 1048577\r\n"), 0), ZK_ETOOBIG);
    text_str(&t, "MSG big 3 1048576\r\n");
    text_rep(&t, '\r', 1048576);
    text_str(&t, "\r\n");
    CHECK_EQ_INT(nats_code(t.p, t.len, 0), t.len);
    CHECK_EQ_INT(op.payload.len, 1048576);
    CHECK_EQ_INT(nats_code(t.p, t.len - 1, 0), ZK_EAGAIN);
    text_free(&t);
}

TEST(nats_control_line_limit) {
    text t = {NULL, 0, 0};
    /* a control line of 4096 bytes is fine */
    text_str(&t, "MSG ");
    text_rep(&t, 's', 4096 - 4 - 4);
    text_str(&t, " 1 0");
    CHECK_EQ_INT(t.len, 4096);
    CHECK_EQ_INT(nats_code(t.p, t.len, 0), ZK_EAGAIN);
    text_str(&t, "\r");
    CHECK_EQ_INT(nats_code(t.p, t.len, 0), ZK_EAGAIN);
    text_str(&t, "\n\r\n");
    CHECK_EQ_INT(nats_code(t.p, t.len, 0), t.len);
    CHECK_EQ_INT(op.subject.len, 4088);
    text_free(&t);
    /* 4097: too big, before and after its end arrives */
    text_str(&t, "MSG ");
    text_rep(&t, 's', 4096 - 4 - 4 + 1);
    text_str(&t, " 1 0");
    CHECK_EQ_INT(nats_code(t.p, t.len, 0), ZK_ETOOBIG);
    CHECK_EQ_INT(nats_code(t.p, t.len - 1, 0), ZK_EAGAIN);
    text_str(&t, "\r\n\r\n");
    CHECK_EQ_INT(nats_code(t.p, t.len, 0), ZK_ETOOBIG);
    text_free(&t);
    /* -ERR, PING padding and unknown lines have the same limit */
    text_str(&t, "-ERR '");
    text_rep(&t, 'e', 5000);
    CHECK_EQ_INT(nats_code(t.p, t.len, 0), ZK_ETOOBIG);
    text_free(&t);
    text_str(&t, "PING");
    text_rep(&t, ' ', 5000);
    text_str(&t, "\r\n");
    CHECK_EQ_INT(nats_code(t.p, t.len, 0), ZK_ETOOBIG);
    text_free(&t);
    text_rep(&t, 'z', 4097);
    CHECK_EQ_INT(nats_code(t.p, t.len, 0), ZK_ETOOBIG);
    text_free(&t);
}

/* A CR not followed by LF in a long INFO line (under 64 KiB) is malformed:
   ZK_EPROTO, as it is in a short line, not a size limit. */
TEST(nats_bare_cr_in_long_info) {
    text t = {NULL, 0, 0};
    text_str(&t, "INFO {\"x\":\"");
    text_rep(&t, 'x', 5000);
    text_str(&t, "\rX\"}\r\n");
    CHECK_EQ_INT(nats_code(t.p, t.len, 0), ZK_EPROTO);
    text_free(&t);
}

TEST(nats_every_prefix_on_guard_page) {
    size_t i, k;
    int wrong = 0;
    for (i = 0; i < COUNT(nats_valid); i++) {
        const input *v = &nats_valid[i];
        text whole = {NULL, 0, 0};
        CHECK_EQ_INT(zk_nats_parse(v->bytes, v->len, 0, &op), v->len);
        nats_describe(&whole, (int)v->len, &op, v->bytes, v->len);
        for (k = 0; k <= v->len; k++) {
            guard_buf g = guard_alloc(v->bytes, k);
            int rc = zk_nats_parse((const char *)g.data, k, 0, &op);
            if (k < v->len ? rc != ZK_EAGAIN : rc != (int)v->len) {
                printf("  \"%s\" prefix %zu: %s\n", show(v->bytes, v->len), k, zk_err_name(rc));
                wrong++;
            } else if (k == v->len) {
                text got = {NULL, 0, 0};
                nats_describe(&got, rc, &op, g.data, k);
                if (!text_eq(&got, &whole)) wrong++;
                text_free(&got);
            }
            guard_free(&g);
        }
        text_free(&whole);
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(views_outside, 0);
}

TEST(nats_back_to_back_and_every_split) {
    text all = {NULL, 0, 0};
    size_t i, at = 0;
    int wrong = 0;
    for (i = 0; i < COUNT(nats_valid); i++) {
        wrong += nats_every_split(nats_valid[i].bytes, nats_valid[i].len, 0);
        text_add(&all, nats_valid[i].bytes, nats_valid[i].len);
    }
    /* consumed counts, one op after another */
    for (i = 0; i < COUNT(nats_valid); i++) {
        int rc = zk_nats_parse(all.p + at, all.len - at, 0, &op);
        CHECK_EQ_INT(rc, nats_valid[i].len);
        if (rc <= 0) break;
        at += (size_t)rc;
    }
    CHECK_EQ_INT(at, all.len);
    CHECK_EQ_INT(zk_nats_parse(all.p + at, 0, 0, &op), ZK_EAGAIN);
    wrong += nats_every_split(all.p, all.len, 0);
    text_str(&all, "HMSG a 1 2 2\r\n\r\n\r\n");
    wrong += nats_every_split(all.p, all.len, 0);
    /* a small max_payload stops the stream at the 5-byte payload */
    wrong += nats_every_split(all.p, all.len, 4);
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(views_outside, 0);
    text_free(&all);
}

/* ---- NATS: encoders ---- */

typedef struct subject_arg {
    const char *prefix;
    zk_str room;
} subject_arg;

static int call_subject(char *out, size_t cap, const void *arg) {
    const subject_arg *a = (const subject_arg *)arg;
    return zk_nats_subject(out, cap, a->prefix, a->room);
}

TEST(nats_subject_escaping) {
    static const struct {
        const char *prefix;
        zk_str room;
        const char *want;
    } v[] = {
        {"zk", ZK_STR("lobby"), "zk.lobby"},
        {"zk.rooms", ZK_STR("Lobby-2"), "zk.rooms.Lobby-2"},
        {"a_b-c.d$e", ZK_STR("az-AZ-09"), "a_b-c.d$e.az-AZ-09"},
        {"zk", ZK_STR("a.b"), "zk.a_2Eb"},
        {"zk", ZK_STR("*"), "zk._2A"},
        {"zk", ZK_STR(">"), "zk._3E"},
        {"zk", ZK_STR("a b"), "zk.a_20b"},
        {"zk", ZK_STR("\t\r\n"), "zk._09_0D_0A"},
        {"zk", ZK_STR("_"), "zk._5F"},
        {"zk", ZK_STR("_2E"), "zk._5F2E"},
        {"zk", ZK_STR("caf\xC3\xA9"), "zk.caf_C3_A9"},
        {"zk", {"\0\x7f\x80\xff", 4}, "zk._00_7F_80_FF"},
        {"zk", ZK_STR("..."), "zk._2E_2E_2E"},
        {"zk", ZK_STR("a.*.>"), "zk.a_2E_2A_2E_3E"},
        {"zk", ZK_STR("/~+:=%"), "zk._2F_7E_2B_3A_3D_25"},
        {"z", ZK_STR("-"), "z.-"},
    };
    size_t i;
    for (i = 0; i < COUNT(v); i++) {
        char out[64], sub[96];
        subject_arg a;
        size_t n = strlen(v[i].want);
        int rc;
        memset(out, 'Z', sizeof out);
        rc = zk_nats_subject(out, sizeof out, v[i].prefix, v[i].room);
        CHECK_EQ_INT(rc, n);
        if (rc == (int)n) {
            CHECK(memcmp(out, v[i].want, n + 1) == 0); /* NUL-terminated */
            /* a subject SUB and PUB accept */
            CHECK(zk_nats_sub(sub, sizeof sub, zk_str_c(v[i].want), 1) > 0);
            CHECK(zk_nats_pub(sub, sizeof sub, zk_str_c(v[i].want), zk_str_c("x")) > 0);
        }
        a.prefix = v[i].prefix;
        a.room = v[i].room;
        CHECK_EQ_INT(every_cap(call_subject, &a, v[i].want, n, n + 1), 0);
    }
}

TEST(nats_subject_refused) {
    static const char *const bad_prefixes[] = {
        "", ".", ".zk", "zk.", "zk..rooms", "..", "a.*", "*", ">", "a.>", "a*", "a>b",
        "a b", "a\tb", " a", "a ", "a\r\nb", "\x7f", "caf\xC3\xA9", "a\x01",
    };
    char out[64];
    size_t i;
    for (i = 0; i < COUNT(bad_prefixes); i++) {
        int rc = zk_nats_subject(out, sizeof out, bad_prefixes[i], zk_str_c("room"));
        if (rc != ZK_EINVAL) printf("  prefix \"%s\": %d\n", bad_prefixes[i], rc);
        CHECK_EQ_INT(rc, ZK_EINVAL);
        /* even with no room to write (the prefix is judged first) */
        CHECK_EQ_INT(zk_nats_subject(out, 0, bad_prefixes[i], zk_str_c("room")), ZK_EINVAL);
    }
    CHECK_EQ_INT(zk_nats_subject(out, sizeof out, NULL, zk_str_c("room")), ZK_EINVAL);
    {
        zk_str none = {NULL, 0}, null_ptr = {NULL, 3};
        CHECK_EQ_INT(zk_nats_subject(out, sizeof out, "zk", none), ZK_EINVAL);
        CHECK_EQ_INT(zk_nats_subject(out, sizeof out, "zk", zk_str_c("")), ZK_EINVAL);
        CHECK_EQ_INT(zk_nats_subject(out, sizeof out, "zk", null_ptr), ZK_EINVAL);
    }
}

/* Decodes the room part of a subject made by zk_nats_subject; -1 when it
   is not in the escaped form. */
static long unescape(const char *s, size_t n, unsigned char *out) {
    static const char hex[] = "0123456789ABCDEF";
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-') {
            out[o++] = c;
            i++;
        } else if (c == '_' && n - i >= 3 && s[i + 1] && s[i + 2] && strchr(hex, s[i + 1]) &&
                   strchr(hex, s[i + 2])) {
            out[o++] = (unsigned char)((strchr(hex, s[i + 1]) - hex) * 16 + (strchr(hex, s[i + 2]) - hex));
            i += 3;
        } else {
            return -1;
        }
    }
    return (long)o;
}

typedef struct named {
    unsigned char name[12];
    size_t len;
    char subject[48];
} named;

static int by_subject(const void *a, const void *b) {
    return strcmp(((const named *)a)->subject, ((const named *)b)->subject);
}

TEST(nats_subject_is_injective) {
    static const unsigned char tricky[] = "_.*> -5FfA2E0\t\xff\x7f";
    enum { N = 5000 };
    named *v = (named *)calloc(N, sizeof *v);
    size_t i, j;
    int wrong = 0, collisions = 0;
    rng_state = 0x1234567887654321ull;
    for (i = 0; i < N; i++) {
        unsigned char back[12];
        zk_str room;
        long m;
        int rc;
        v[i].len = 1 + (size_t)(rng() % 12);
        for (j = 0; j < v[i].len; j++) {
            uint64_t r = rng();
            v[i].name[j] = (r & 1) ? tricky[(r >> 8) % (sizeof tricky - 1)] : (unsigned char)(r >> 16);
        }
        room.ptr = (const char *)v[i].name;
        room.len = v[i].len;
        rc = zk_nats_subject(v[i].subject, sizeof v[i].subject, "zk.r", room);
        if (rc < 5 || memcmp(v[i].subject, "zk.r.", 5) != 0 || (size_t)rc != strlen(v[i].subject)) {
            wrong++;
            continue;
        }
        /* one token after the prefix, only [A-Za-z0-9_-] */
        for (j = 5; j < (size_t)rc; j++) {
            char c = v[i].subject[j];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                  c == '_'))
                wrong++;
        }
        /* and it decodes back to the name */
        m = unescape(v[i].subject + 5, (size_t)rc - 5, back);
        if (m != (long)v[i].len || memcmp(back, v[i].name, v[i].len) != 0) wrong++;
    }
    /* distinct names, distinct subjects */
    qsort(v, N, sizeof *v, by_subject);
    for (i = 1; i < N; i++)
        if (strcmp(v[i].subject, v[i - 1].subject) == 0 &&
            (v[i].len != v[i - 1].len || memcmp(v[i].name, v[i - 1].name, v[i].len) != 0))
            collisions++;
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(collisions, 0);
    free(v);
}

typedef struct pub_arg {
    zk_str subject, payload;
    uint64_t sid;
    int which; /* 0 pub, 1 sub, 2 unsub */
} pub_arg;

static int call_pub(char *out, size_t cap, const void *arg) {
    const pub_arg *a = (const pub_arg *)arg;
    if (a->which == 0) return zk_nats_pub(out, cap, a->subject, a->payload);
    if (a->which == 1) return zk_nats_sub(out, cap, a->subject, a->sid);
    return zk_nats_unsub(out, cap, a->sid);
}

TEST(nats_pub_sub_unsub_exact_bytes) {
    static const struct {
        int which;
        zk_str subject, payload;
        uint64_t sid;
        const char *want;
        size_t len;
    } v[] = {
        {0, ZK_STR("zk.lobby"), ZK_STR("hello"), 0, IN("PUB zk.lobby 5\r\nhello\r\n")},
        {0, ZK_STR("a"), ZK_STR(""), 0, IN("PUB a 0\r\n\r\n")},
        {0, ZK_STR("a"), {NULL, 0}, 0, IN("PUB a 0\r\n\r\n")},
        {0, ZK_STR("zk.a_2Eb"), {"\r\n\0\xffPING\r\n", 10}, 0,
         IN("PUB zk.a_2Eb 10\r\n\r\n\0\xffPING\r\n\r\n")},
        {1, ZK_STR("zk.lobby"), {NULL, 0}, 1, IN("SUB zk.lobby 1\r\n")},
        {1, ZK_STR("a.b.c"), {NULL, 0}, 0, IN("SUB a.b.c 0\r\n")},
        {1, ZK_STR("x"), {NULL, 0}, 18446744073709551615ull, IN("SUB x 18446744073709551615\r\n")},
        {2, {NULL, 0}, {NULL, 0}, 1, IN("UNSUB 1\r\n")},
        {2, {NULL, 0}, {NULL, 0}, 0, IN("UNSUB 0\r\n")},
        {2, {NULL, 0}, {NULL, 0}, 18446744073709551615ull, IN("UNSUB 18446744073709551615\r\n")},
    };
    size_t i;
    for (i = 0; i < COUNT(v); i++) {
        char out[128];
        pub_arg a;
        int n;
        a.which = v[i].which;
        a.subject = v[i].subject;
        a.payload = v[i].payload;
        a.sid = v[i].sid;
        n = call_pub(out, sizeof out, &a);
        CHECK_EQ_INT(n, v[i].len);
        CHECK_MEM(out, n > 0 ? (size_t)n : 0, v[i].want, v[i].len);
        CHECK_EQ_INT(every_cap(call_pub, &a, v[i].want, v[i].len, v[i].len), 0);
    }
}

TEST(nats_pub_large_payload) {
    text payload = {NULL, 0, 0}, want = {NULL, 0, 0};
    char *out;
    zk_str p;
    text_rep(&payload, '\n', 70000);
    p.ptr = payload.p;
    p.len = payload.len;
    text_str(&want, "PUB s 70000\r\n");
    text_add(&want, payload.p, payload.len);
    text_str(&want, "\r\n");
    out = (char *)malloc(want.len);
    CHECK_EQ_INT(zk_nats_pub(out, want.len, zk_str_c("s"), p), want.len);
    CHECK_MEM(out, want.len, want.p, want.len);
    CHECK_EQ_INT(zk_nats_pub(out, want.len - 1, zk_str_c("s"), p), ZK_ENOSPACE);
    CHECK_EQ_INT(zk_nats_pub(out, 13, zk_str_c("s"), p), ZK_ENOSPACE);
    free(out);
    text_free(&payload);
    text_free(&want);
}

TEST(nats_pub_sub_refuse_bad_subjects) {
    static const zk_str bad[] = {
        ZK_STR(""), {NULL, 0}, {NULL, 2}, ZK_STR("a b"), ZK_STR("a\tb"), ZK_STR("a\r\nPUB x 1"), ZK_STR(" a"),
        ZK_STR("a "), ZK_STR("a\n"), ZK_STR("a\r"), {"a\0b", 3}, ZK_STR("a..b"), ZK_STR(".a"), ZK_STR("a."),
    };
    char out[128];
    size_t i;
    for (i = 0; i < COUNT(bad); i++) {
        CHECK_EQ_INT(zk_nats_pub(out, sizeof out, bad[i], zk_str_c("x")), ZK_EINVAL);
        CHECK_EQ_INT(zk_nats_sub(out, sizeof out, bad[i], 1), ZK_EINVAL);
    }
    /* a payload pointer that is NULL with a length */
    {
        zk_str null_payload = {NULL, 2};
        CHECK_EQ_INT(zk_nats_pub(out, sizeof out, zk_str_c("a"), null_payload), ZK_EINVAL);
    }
}

/* What the adapter does: the subject for a room, SUB, then the server's
   MSG for it parses back to that subject and payload. */
TEST(nats_round_trip) {
    char subject[64], cmd[256], msg[256];
    zk_str s, payload = ZK_STR("{\"type\":\"chat\",\"text\":\"a\\r\\nb\"}\r\n");
    int n, c, m;
    n = zk_nats_subject(subject, sizeof subject, "zk.app", zk_str_c("room #1 (\xC3\xA9t\xC3\xA9)"));
    CHECK(n > 0);
    s.ptr = subject;
    s.len = (size_t)n;
    c = zk_nats_sub(cmd, sizeof cmd, s, 42);
    CHECK(c > 0);
    c = zk_nats_pub(cmd, sizeof cmd, s, payload);
    CHECK(c > 0);
    /* a server relays PUB as MSG: same subject and payload bytes */
    CHECK(c > 4 && memcmp(cmd, "PUB ", 4) == 0);
    m = snprintf(msg, sizeof msg, "MSG %.*s 42 %zu\r\n", n, subject, payload.len);
    memcpy(msg + m, payload.ptr, payload.len);
    memcpy(msg + m + payload.len, "\r\n", 2);
    m += (int)payload.len + 2;
    CHECK_EQ_INT(nats_every_split(msg, (size_t)m, 0), 0);
    CHECK_EQ_INT(zk_nats_parse(msg, (size_t)m, 0, &op), m);
    CHECK_MEM(op.subject.ptr, op.subject.len, subject, (size_t)n);
    CHECK_MEM(op.payload.ptr, op.payload.len, payload.ptr, payload.len);
    CHECK_EQ_INT(op.sid, 42);
}

/* ==================================================================== */
/* ---- the adapters' message bodies between nodes (zk__bmsg_parse) ---- */

/* Every prefix of each body, and each body with one byte changed, parsed
   from a buffer that ends at an unmapped page: nothing reads past it. A
   prefix parses only when it cuts the payload, the last field, and then
   with the payload cut short. */
TEST(broker_bodies_every_prefix_on_guard_page) {
    static const char *const bodies[] = {
        "ZK1 M 0123456789abcdef L 0000000012 7 1 - 2 1\n5:lobby3:a b"
        "22:AAAAAAAAAAAAAAAAAAAAAA12:chat.message{\"text\":\"hi\"}",
        "ZK1 M 0123456789abcdef P 0000000000 18446744073709551615 7 "
        "-AAAAAAAAAAAAAAAAAAAAA 0 0\n4:ping",
        "ZK1 H fedcba9876543210 42 2\n0123456789abcdef 7\n00000000000000ff 1\n",
        "ZK1 R fedcba9876543210 20 0123456789abcdef\n",
    };
    static const char swaps[] = {'0', '9', ':', ' ', '\n', '-', 'L', '\0', '\xff'};
    size_t b, k, i, j;
    int bad = 0;
    for (b = 0; b < sizeof bodies / sizeof *bodies; b++) {
        const char *body = bodies[b];
        size_t len = strlen(body), payload_at = 0;
        zk__bmsg m;
        guard_buf g = guard_alloc(body, len);
        CHECK_EQ_INT(zk__bmsg_parse((char *)g.data, len, &m), 0);
        if (m.kind == 'M') {
            payload_at = (size_t)(m.payload - (const char *)g.data);
            CHECK_EQ_INT(payload_at + m.payload_len, len);
        }
        guard_free(&g);
        for (k = 0; k < len; k++) {
            int rc;
            g = guard_alloc(body, k);
            rc = zk__bmsg_parse((char *)g.data, k, &m);
            if (rc == 0 && !(m.kind == 'M' && k >= payload_at && m.payload_len == k - payload_at) &&
                !(m.kind == 'H' && k > 0)) {
                printf("  body %zu: prefix of %zu parsed\n", b, k);
                bad++;
            }
            guard_free(&g);
        }
        for (i = 0; i < len; i++) {
            for (j = 0; j < sizeof swaps; j++) {
                char copy[256];
                CHECK(len <= sizeof copy);
                memcpy(copy, body, len);
                copy[i] = swaps[j];
                g = guard_alloc(copy, len);
                (void)zk__bmsg_parse((char *)g.data, len, &m); /* no read past the end */
                guard_free(&g);
            }
        }
    }
    CHECK_EQ_INT(bad, 0);
}

int main(void) {
    RUN(resp_simple_and_error);
    RUN(resp_integers);
    RUN(resp_bulk);
    RUN(resp_arrays_in_pre_order);
    RUN(resp_pubsub_replies);
    RUN(resp_back_to_back_consumed);
    RUN(resp_every_prefix_on_guard_page);
    RUN(resp_every_split_of_a_stream);
    RUN(resp_malformed);
    RUN(resp_bare_cr_in_simple_string);
    RUN(resp_bad_type_byte_refused_at_once);
    RUN(resp_bulk_limit);
    RUN(resp_item_limit);
    RUN(resp_depth_limit);
    RUN(resp_line_limits);
    RUN(resp_command_exact_bytes);
    RUN(resp_command_large_argument);
    RUN(nats_info);
    RUN(nats_long_info);
    RUN(nats_msg);
    RUN(nats_sid);
    RUN(nats_sign_in_numbers);
    RUN(nats_sid_round_trip_uint64);
    RUN(nats_ping_pong_ok_err);
    RUN(nats_malformed);
    RUN(nats_payload_limit);
    RUN(nats_control_line_limit);
    RUN(nats_bare_cr_in_long_info);
    RUN(nats_every_prefix_on_guard_page);
    RUN(nats_back_to_back_and_every_split);
    RUN(nats_subject_escaping);
    RUN(nats_subject_refused);
    RUN(nats_subject_is_injective);
    RUN(nats_pub_sub_unsub_exact_bytes);
    RUN(nats_pub_large_payload);
    RUN(nats_pub_sub_refuse_bad_subjects);
    RUN(nats_round_trip);
    RUN(broker_bodies_every_prefix_on_guard_page);
    return test_summary();
}
