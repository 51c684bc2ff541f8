/* libFuzzer harness for the Redis RESP2 parser (zk_resp_parse) and the
   command encoder (zk_resp_command).

   Input: the bytes a Redis server sent, read as a stream: replies are taken
   one after another until the parser asks for more (ZK_EAGAIN) or refuses
   the rest. Each input is read with the default max_bulk and again with a
   small one (1 to 24, from a hash of the input). Every parse reads a
   malloc'd copy of exactly the bytes that have arrived, so ASan catches a
   read past the end. Aborts when:
   - a code is not a byte count in 1..len, ZK_EAGAIN, ZK_EPROTO or
     ZK_ETOOBIG;
   - a reply does not hold up: 1 to ZK_RESP_MAX_ITEMS items; items[0] at
     depth 0; each array of n (0 <= n <= ZK_RESP_MAX_ITEMS) followed by
     exactly n elements one level deeper, in pre-order; depth at most 8;
     every string view inside the bytes the reply used, the views in byte
     order; a simple or error string without CR and at most 64 KiB; a
     bulk string at most max_bulk bytes and followed by CR LF; the reply
     ending in CR LF;
   - the reply written back canonically ("$-1" for nil, integers without
     leading zeros) is no longer than the original and parses to the same
     items; an array of bulk strings is exactly what zk_resp_command
     writes for those arguments, and zk_resp_command fails with
     ZK_ENOSPACE, without writing past cap, one byte short;
   - the stream delivered in two parts (cut at a point from a hash of the
     input), or in reads of 1 to 64 bytes (longer for inputs over 2 KiB),
     gives other replies or another end than the stream read whole. */
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c) do { if (!(c)) { \
    fprintf(stderr, "fuzz_resp: invariant broken at line %d: %s\n", __LINE__, #c); \
    abort(); } } while (0)

static char *copy_exact(const void *data, size_t n) {
    char *p = (char *)malloc(n ? n : 1);
    CHECK(p != NULL);
    if (n) memcpy(p, data, n);
    return p;
}

/* A growing byte string. */
typedef struct text {
    char *p;
    size_t len, cap;
} text;

static void text_add(text *t, const void *s, size_t n) {
    if (t->len + n > t->cap) {
        t->cap = (t->len + n) * 2 + 64;
        t->p = (char *)realloc(t->p, t->cap);
        CHECK(t->p != NULL);
    }
    if (n) memcpy(t->p + t->len, s, n);
    t->len += n;
}
static void text_fmt(text *t, const char *fmt, ...) {
    char tmp[64];
    int n;
    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    CHECK(n > 0 && (size_t)n < sizeof tmp);
    text_add(t, tmp, (size_t)n);
}
/* A tagged number, in binary: the logs are only compared, and formatting
   them cost the fuzzer a fifth of its time. */
static void text_num(text *t, char tag, long long v) {
    text_add(t, &tag, 1);
    text_add(t, &v, sizeof v);
}

static int is_string(int type) {
    return type == ZK_RESP_SIMPLE || type == ZK_RESP_ERROR || type == ZK_RESP_BULK;
}

/* What a reply holds, not where: appended to log. */
static void describe(text *log, int rc, const zk_resp_reply *r) {
    size_t i;
    text_num(log, '[', rc);
    text_num(log, ':', (long long)r->count);
    for (i = 0; i < r->count; i++) {
        const zk_resp_item *it = &r->items[i];
        text_num(log, ' ', it->type);
        text_num(log, '/', it->depth);
        if (it->type == ZK_RESP_INTEGER || it->type == ZK_RESP_ARRAY)
            text_num(log, '=', (long long)it->integer);
        if (is_string(it->type)) {
            text_num(log, '\'', (long long)it->str.len);
            text_add(log, it->str.ptr, it->str.len);
        }
    }
    text_add(log, "]", 1);
}

/* Walks one value from items[*i] (an array with its elements), checking
   depths and counts; *i ends past it. */
static void walk(const zk_resp_reply *r, size_t *i, int depth) {
    const zk_resp_item *it;
    CHECK(*i < r->count);
    it = &r->items[(*i)++];
    CHECK(it->depth == depth && depth <= 8);
    if (it->type == ZK_RESP_ARRAY) {
        int64_t k;
        CHECK(it->integer >= 0 && it->integer <= ZK_RESP_MAX_ITEMS);
        for (k = 0; k < it->integer; k++) walk(r, i, depth + 1);
    } else {
        CHECK(it->type == ZK_RESP_INTEGER || it->type == ZK_RESP_NIL || is_string(it->type));
    }
}

static void check_reply(const zk_resp_reply *r, int rc, const char *buf, size_t len, size_t max_bulk) {
    size_t i = 0;
    const char *last = buf;
    CHECK(rc >= 3 && (size_t)rc <= len);
    CHECK(r->count >= 1 && r->count <= ZK_RESP_MAX_ITEMS);
    walk(r, &i, 0);
    CHECK(i == r->count);
    CHECK(buf[rc - 2] == '\r' && buf[rc - 1] == '\n');
    for (i = 0; i < r->count; i++) {
        const zk_resp_item *it = &r->items[i];
        if (!is_string(it->type)) continue;
        CHECK(it->str.ptr != NULL);
        CHECK(it->str.ptr > last && it->str.ptr <= buf + rc - 2);
        CHECK(it->str.len <= (size_t)(buf + rc - 2 - it->str.ptr));
        last = it->str.ptr + it->str.len;
        if (it->type == ZK_RESP_BULK) {
            CHECK(it->str.len <= max_bulk);
            CHECK(it->str.ptr[it->str.len] == '\r' && it->str.ptr[it->str.len + 1] == '\n');
            CHECK(it->str.ptr[-1] == '\n' && it->str.ptr[-2] == '\r');
        } else {
            CHECK(it->str.len <= 65536);
            CHECK(memchr(it->str.ptr, '\r', it->str.len) == NULL);
            CHECK(it->str.ptr[-1] == (char)it->type);
            CHECK(it->str.ptr[it->str.len] == '\r');
        }
    }
}

/* The reply written back in canonical form. */
static void encode(text *out, const zk_resp_reply *r) {
    size_t i;
    for (i = 0; i < r->count; i++) {
        const zk_resp_item *it = &r->items[i];
        switch (it->type) {
        case ZK_RESP_SIMPLE:
        case ZK_RESP_ERROR: {
            char c = (char)it->type;
            text_add(out, &c, 1);
            text_add(out, it->str.ptr, it->str.len);
            text_add(out, "\r\n", 2);
            break;
        }
        case ZK_RESP_BULK:
            text_fmt(out, "$%zu\r\n", it->str.len);
            text_add(out, it->str.ptr, it->str.len);
            text_add(out, "\r\n", 2);
            break;
        case ZK_RESP_INTEGER:
            text_fmt(out, ":%lld\r\n", (long long)it->integer);
            break;
        case ZK_RESP_ARRAY:
            text_fmt(out, "*%lld\r\n", (long long)it->integer);
            break;
        default:
            text_add(out, "$-1\r\n", 5);
        }
    }
}

/* Canonical form, zk_resp_command, and ENOSPACE one byte short. */
static void round_trip(const zk_resp_reply *r, int rc, size_t max_bulk) {
    static zk_resp_reply again;
    text canon = {NULL, 0, 0}, a = {NULL, 0, 0}, b = {NULL, 0, 0};
    char *copy;
    size_t i;
    /* a command has a name: an array of one or more bulk strings */
    int n, bulk_array = r->items[0].type == ZK_RESP_ARRAY && r->count >= 2;
    encode(&canon, r);
    CHECK(canon.len <= (size_t)rc);
    copy = copy_exact(canon.p, canon.len);
    n = zk_resp_parse(copy, canon.len, max_bulk, &again);
    CHECK(n == (int)canon.len);
    describe(&a, 0, r);
    describe(&b, 0, &again);
    CHECK(a.len == b.len && memcmp(a.p, b.p, a.len) == 0);
    free(copy);
    for (i = 1; i < r->count; i++) bulk_array &= r->items[i].type == ZK_RESP_BULK && r->items[i].depth == 1;
    if (bulk_array) {
        zk_str argv[ZK_RESP_MAX_ITEMS];
        char *out = (char *)malloc(canon.len);
        char *shorter = (char *)malloc(canon.len - 1);
        CHECK(out && shorter);
        for (i = 1; i < r->count; i++) argv[i - 1] = r->items[i].str;
        n = zk_resp_command(out, canon.len, r->count - 1, argv);
        CHECK(n == (int)canon.len && memcmp(out, canon.p, canon.len) == 0);
        /* a byte short: ZK_ENOSPACE, nothing written past cap (ASan) */
        n = zk_resp_command(shorter, canon.len - 1, r->count - 1, argv);
        CHECK(n == ZK_ENOSPACE);
        free(out);
        free(shorter);
    }
    free(canon.p);
    free(a.p);
    free(b.p);
}

/* Reads data[0..size) as a stream, delivered up to each cut in turn (the
   last cut is size), each delivery copied exactly (a read past it is caught).
   Logs every reply and the end; with checks, checks every reply. */
static void stream(const uint8_t *data, size_t size, const size_t *cuts, size_t ncuts, size_t max_bulk,
                   text *log, int checks) {
    static zk_resp_reply r;
    size_t consumed = 0, c, limit = max_bulk ? max_bulk : (size_t)512 << 20;
    int rc = ZK_EAGAIN;
    for (c = 0; c < ncuts; c++) {
        size_t delivered = cuts[c] < size ? cuts[c] : size;
        char *all = copy_exact(data, delivered); /* exactly what has arrived */
        for (;;) {
            size_t n = delivered - consumed;
            const char *p = all + consumed;
            rc = zk_resp_parse(p, n, max_bulk, &r);
            CHECK(rc == ZK_EAGAIN || rc == ZK_EPROTO || rc == ZK_ETOOBIG || (rc > 0 && (size_t)rc <= n));
            CHECK(r.count <= ZK_RESP_MAX_ITEMS);
            if (rc > 0) {
                if (checks) {
                    check_reply(&r, rc, p, n, limit);
                    round_trip(&r, rc, max_bulk);
                }
                describe(log, rc, &r);
                consumed += (size_t)rc;
            }
            if (rc <= 0) break;
        }
        free(all);
        if (rc != ZK_EAGAIN) break;
    }
    text_num(log, '<', rc);
}

static void run(const uint8_t *data, size_t size, size_t max_bulk, uint64_t h) {
    text whole = {NULL, 0, 0}, part = {NULL, 0, 0};
    size_t cuts[2], *reads, n = 0, k = 0, step = size / 32 > 64 ? size / 32 : 64;
    cuts[0] = size;
    stream(data, size, cuts, 1, max_bulk, &whole, 1);
    /* two parts */
    cuts[0] = size ? (size_t)(h % (size + 1)) : 0;
    cuts[1] = size;
    stream(data, size, cuts, 2, max_bulk, &part, 0);
    CHECK(part.len == whole.len && memcmp(part.p, whole.p, whole.len) == 0);
    /* reads of 1 to 64 bytes (up to size / 32 for long inputs: each read
       copies what is unread) */
    reads = (size_t *)malloc((size + 1) * sizeof *reads);
    CHECK(reads != NULL);
    while (k < size) {
        h ^= h << 13;
        h ^= h >> 7;
        h ^= h << 17;
        k += 1 + (size_t)(h % step);
        if (k > size) k = size;
        reads[n++] = k;
    }
    if (n == 0) reads[n++] = 0;
    part.len = 0;
    stream(data, size, reads, n, max_bulk, &part, 0);
    CHECK(part.len == whole.len && memcmp(part.p, whole.p, whole.len) == 0);
    free(reads);
    free(whole.p);
    free(part.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint64_t h = 1469598103934665603ull;
    size_t i;
    for (i = 0; i < size; i++) h = (h ^ data[i]) * 1099511628211ull;
    run(data, size, 0, h | 1);
    run(data, size, 1 + (size_t)(h % 24), (h >> 7) | 1);
    return 0;
}
