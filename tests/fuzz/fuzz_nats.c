/* libFuzzer harness for the NATS client protocol: the parser of server
   operations (zk_nats_parse) and the encoders (zk_nats_subject,
   zk_nats_pub, zk_nats_sub, zk_nats_unsub).

   Input: the bytes a NATS server sent, read as a stream: operations are
   taken one after another until the parser asks for more (ZK_EAGAIN) or
   refuses the rest. Each input is read with the default max_payload and
   again with a small one (1 to 24, from a hash of the input). Every parse
   reads a malloc'd copy of exactly the bytes that have arrived, so ASan
   catches a read past the end. Aborts when:
   - a code is not a byte count in 1..len, ZK_EAGAIN, ZK_EPROTO or
     ZK_ETOOBIG;
   - an operation does not match its bytes, read again here: the control
     line is everything up to the first CR LF, without another CR, at most
     4096 bytes (64 KiB for INFO); its first token names the operation in
     any case; PING, PONG and +OK have nothing after it; INFO's text is the
     rest of the line; -ERR's text lies in the line; a MSG line has 3 or 4
     more tokens: the subject, the sid (its decimal value), an optional
     reply subject and the payload size, which is the payload's length, at
     most max_payload; the payload starts just after the line and is
     followed by CR LF, where the operation ends; every view lies inside
     the bytes the operation used;
   - a MSG written back canonically parses to the same fields, and PUB for
     its subject and payload is exactly "PUB subject size CR LF payload
     CR LF" (or ZK_EINVAL when the subject has characters a subject may
     not have), ZK_ENOSPACE one byte short without writing past cap;
   - zk_nats_subject, for a room named by the first bytes of the input
     (and by each MSG subject), does not give one token of [A-Za-z0-9_-]
     after the prefix that decodes back to the name, NUL-terminated, or
     does not fail with ZK_ENOSPACE one byte short;
   - the stream delivered in two parts (cut at a point from a hash of the
     input), or in reads of 1 to 64 bytes (longer for inputs over 2 KiB),
     gives other operations or another end than the stream read whole. */
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c) do { if (!(c)) { \
    fprintf(stderr, "fuzz_nats: invariant broken at line %d: %s\n", __LINE__, #c); \
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
static void text_view(text *t, char tag, zk_str s) {
    text_num(t, tag, (long long)s.len);
    text_add(t, s.ptr, s.len);
}

/* s lies inside buf[0..len) ({NULL, 0} allowed). */
static int inside(zk_str s, const char *buf, size_t len) {
    if (!s.ptr) return s.len == 0;
    return s.ptr >= buf && s.ptr <= buf + len && s.len <= (size_t)(buf + len - s.ptr);
}

static int is_space(char c) { return c == ' ' || c == '\t'; }

static int same_nocase(const char *a, size_t n, const char *b) {
    size_t i;
    if (strlen(b) != n) return 0;
    for (i = 0; i < n; i++) {
        char x = a[i];
        if (x >= 'a' && x <= 'z') x = (char)(x - 32);
        if (x != b[i]) return 0;
    }
    return 1;
}

/* Up to max tokens of line[0..n) split at spaces and tabs; returns how
   many there are (counting past max). */
static size_t tokens(const char *line, size_t n, zk_str *tok, size_t max) {
    size_t i = 0, count = 0;
    for (;;) {
        size_t start;
        while (i < n && is_space(line[i])) i++;
        if (i == n) return count;
        start = i;
        while (i < n && !is_space(line[i])) i++;
        if (count < max) {
            tok[count].ptr = line + start;
            tok[count].len = i - start;
        }
        count++;
    }
}

/* The decimal value of s (digits only, at most 20 of them, fits in 64 bits). */
static int decimal(zk_str s, uint64_t *out) {
    size_t i;
    uint64_t v = 0;
    if (s.len == 0 || s.len > 20) return 0;
    for (i = 0; i < s.len; i++) {
        unsigned d = (unsigned char)s.ptr[i] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10) return 0;
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

/* What an operation holds, not where: appended to log. */
static void describe(text *log, int rc, const zk_nats_op *op) {
    text_num(log, '[', rc);
    text_num(log, ':', op->type);
    if (op->type == ZK_NATS_MSG) {
        text_view(log, 's', op->subject);
        text_view(log, 'r', op->reply);
        text_num(log, 'i', (long long)op->sid);
        text_view(log, 'p', op->payload);
    }
    if (op->type == ZK_NATS_INFO || op->type == ZK_NATS_ERR) text_view(log, 't', op->text);
    text_add(log, "]", 1);
}

static void check_op(const zk_nats_op *op, int rc, const char *buf, size_t len, size_t max_payload) {
    const char *cr;
    size_t line, name = 0, rest;
    CHECK(rc >= 3 && (size_t)rc <= len);
    CHECK(inside(op->subject, buf, (size_t)rc) && inside(op->reply, buf, (size_t)rc));
    CHECK(inside(op->payload, buf, (size_t)rc) && inside(op->text, buf, (size_t)rc));
    cr = (const char *)memchr(buf, '\r', (size_t)rc);
    CHECK(cr != NULL && cr + 1 < buf + rc && cr[1] == '\n');
    line = (size_t)(cr - buf);
    CHECK(line <= (op->type == ZK_NATS_INFO ? 65536u : 4096u));
    while (name < line && !is_space(buf[name])) name++;
    for (rest = name; rest < line && is_space(buf[rest]); rest++) {}
    CHECK(buf[rc - 2] == '\r' && buf[rc - 1] == '\n');
    if (op->type != ZK_NATS_MSG) {
        CHECK((size_t)rc == line + 2);
        CHECK(op->subject.len == 0 && op->reply.len == 0 && op->payload.len == 0 && op->sid == 0);
    }
    switch (op->type) {
    case ZK_NATS_PING:
        CHECK(same_nocase(buf, name, "PING") && rest == line);
        break;
    case ZK_NATS_PONG:
        CHECK(same_nocase(buf, name, "PONG") && rest == line);
        break;
    case ZK_NATS_OK:
        CHECK(same_nocase(buf, name, "+OK") && rest == line);
        break;
    case ZK_NATS_INFO:
        CHECK(same_nocase(buf, name, "INFO") && rest < line);
        CHECK(op->text.ptr == buf + rest && op->text.len == line - rest);
        break;
    case ZK_NATS_ERR:
        CHECK(same_nocase(buf, name, "-ERR"));
        CHECK(op->text.ptr >= buf + rest && op->text.ptr + op->text.len <= buf + line);
        break;
    case ZK_NATS_MSG: {
        zk_str tok[6];
        size_t n = tokens(buf, line, tok, 6);
        uint64_t sid, size;
        CHECK(same_nocase(buf, name, "MSG"));
        CHECK(n == 4 || n == 5);
        CHECK(op->subject.ptr == tok[1].ptr && op->subject.len == tok[1].len);
        CHECK(decimal(tok[2], &sid) && sid == op->sid);
        if (n == 5) CHECK(op->reply.ptr == tok[3].ptr && op->reply.len == tok[3].len);
        else CHECK(op->reply.len == 0);
        CHECK(decimal(tok[n - 1], &size) && size == op->payload.len);
        CHECK(op->payload.len <= max_payload);
        CHECK(op->payload.ptr == buf + line + 2);
        CHECK((size_t)rc == line + 2 + op->payload.len + 2);
        break;
    }
    default:
        CHECK(0);
    }
}

/* The subject for a room: "zk.r." and one token that decodes to the name;
   ZK_ENOSPACE at cap one byte short (no write past it). */
static void check_subject(zk_str room) {
    static const char hex[] = "0123456789ABCDEF";
    char *out, *shorter;
    size_t cap = 5 + room.len * 3 + 1, i, o = 0;
    unsigned char *back;
    int n;
    if (room.len == 0) return;
    out = (char *)malloc(cap);
    back = (unsigned char *)malloc(room.len);
    CHECK(out && back);
    n = zk_nats_subject(out, cap, "zk.r", room);
    CHECK(n >= 6 && (size_t)n < cap && out[n] == '\0' && memcmp(out, "zk.r.", 5) == 0);
    for (i = 5; i < (size_t)n; o++) {
        char c = out[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-') {
            back[o] = (unsigned char)c;
            i++;
        } else {
            const char *h, *l;
            CHECK(c == '_' && i + 2 < (size_t)n);
            h = strchr(hex, out[i + 1]);
            l = strchr(hex, out[i + 2]);
            CHECK(out[i + 1] && out[i + 2] && h && l);
            back[o] = (unsigned char)((h - hex) * 16 + (l - hex));
            /* escaped only when it must be */
            CHECK(!((back[o] >= 'a' && back[o] <= 'z') || (back[o] >= 'A' && back[o] <= 'Z') ||
                    (back[o] >= '0' && back[o] <= '9') || back[o] == '-'));
            i += 3;
        }
        CHECK(o < room.len);
    }
    CHECK(o == room.len && memcmp(back, room.ptr, room.len) == 0);
    shorter = (char *)malloc((size_t)n);
    CHECK(shorter != NULL);
    CHECK(zk_nats_subject(shorter, (size_t)n, "zk.r", room) == ZK_ENOSPACE);
    free(shorter);
    free(back);
    free(out);
}

static int same(zk_str a, zk_str b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* A MSG written back canonically, and PUB for it. */
static void round_trip(const zk_nats_op *op, size_t max_payload) {
    static zk_nats_op again;
    text msg = {NULL, 0, 0}, want = {NULL, 0, 0};
    char *copy, *out;
    int n;
    size_t i, space = 0;
    text_add(&msg, "MSG ", 4);
    text_add(&msg, op->subject.ptr, op->subject.len);
    text_fmt(&msg, " %llu ", (unsigned long long)op->sid);
    if (op->reply.len) {
        text_add(&msg, op->reply.ptr, op->reply.len);
        text_add(&msg, " ", 1);
    }
    text_fmt(&msg, "%zu\r\n", op->payload.len);
    text_add(&msg, op->payload.ptr, op->payload.len);
    text_add(&msg, "\r\n", 2);
    copy = copy_exact(msg.p, msg.len);
    if (msg.len - op->payload.len - 4 <= 4096) {
        n = zk_nats_parse(copy, msg.len, max_payload, &again);
        CHECK(n == (int)msg.len && again.type == ZK_NATS_MSG && again.sid == op->sid);
        CHECK(same(again.subject, op->subject) && same(again.reply, op->reply));
        CHECK(same(again.payload, op->payload));
    }
    free(copy);
    /* PUB: the same subject and payload */
    for (i = 0; i < op->subject.len; i++) {
        unsigned char c = (unsigned char)op->subject.ptr[i];
        space |= c <= ' ' || c >= 0x7f;
    }
    text_add(&want, "PUB ", 4);
    text_add(&want, op->subject.ptr, op->subject.len);
    text_fmt(&want, " %zu\r\n", op->payload.len);
    text_add(&want, op->payload.ptr, op->payload.len);
    text_add(&want, "\r\n", 2);
    out = (char *)malloc(want.len);
    CHECK(out != NULL);
    n = zk_nats_pub(out, want.len, op->subject, op->payload);
    if (space) {
        CHECK(n == ZK_EINVAL);
    } else {
        CHECK(n == (int)want.len || n == ZK_EINVAL); /* EINVAL: '.', '*' or '>' misplaced */
        if (n > 0) {
            CHECK(memcmp(out, want.p, want.len) == 0);
            CHECK(zk_nats_pub(out, want.len - 1, op->subject, op->payload) == ZK_ENOSPACE);
        }
    }
    free(out);
    free(msg.p);
    free(want.p);
}

/* Reads data[0..size) as a stream, delivered up to each cut in turn (the
   last cut is size), each delivery copied exactly (a read past it is caught).
   Logs every operation and the end; with checks, checks every operation. */
static void stream(const uint8_t *data, size_t size, const size_t *cuts, size_t ncuts, size_t max_payload,
                   text *log, int checks) {
    static zk_nats_op op;
    size_t consumed = 0, c, limit = max_payload ? max_payload : (size_t)1 << 20;
    int rc = ZK_EAGAIN;
    for (c = 0; c < ncuts; c++) {
        size_t delivered = cuts[c] < size ? cuts[c] : size;
        char *all = copy_exact(data, delivered); /* exactly what has arrived */
        for (;;) {
            size_t n = delivered - consumed;
            const char *p = all + consumed;
            rc = zk_nats_parse(p, n, max_payload, &op);
            CHECK(rc == ZK_EAGAIN || rc == ZK_EPROTO || rc == ZK_ETOOBIG || (rc > 0 && (size_t)rc <= n));
            if (rc > 0) {
                if (checks) {
                    check_op(&op, rc, p, n, limit);
                    if (op.type == ZK_NATS_MSG) {
                        round_trip(&op, max_payload);
                        check_subject(op.subject);
                    }
                }
                describe(log, rc, &op);
                consumed += (size_t)rc;
            }
            if (rc <= 0) break;
        }
        free(all);
        if (rc != ZK_EAGAIN) break;
    }
    text_num(log, '<', rc);
}

static void run(const uint8_t *data, size_t size, size_t max_payload, uint64_t h) {
    text whole = {NULL, 0, 0}, part = {NULL, 0, 0};
    size_t cuts[2], *reads, n = 0, k = 0, step = size / 32 > 64 ? size / 32 : 64;
    cuts[0] = size;
    stream(data, size, cuts, 1, max_payload, &whole, 1);
    cuts[0] = size ? (size_t)(h % (size + 1)) : 0;
    cuts[1] = size;
    stream(data, size, cuts, 2, max_payload, &part, 0);
    CHECK(part.len == whole.len && memcmp(part.p, whole.p, whole.len) == 0);
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
    stream(data, size, reads, n, max_payload, &part, 0);
    CHECK(part.len == whole.len && memcmp(part.p, whole.p, whole.len) == 0);
    free(reads);
    free(whole.p);
    free(part.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint64_t h = 1469598103934665603ull;
    size_t i;
    zk_str room;
    for (i = 0; i < size; i++) h = (h ^ data[i]) * 1099511628211ull;
    run(data, size, 0, h | 1);
    run(data, size, 1 + (size_t)(h % 24), (h >> 7) | 1);
    room.ptr = (const char *)data;
    room.len = size < 40 ? size : 40;
    check_subject(room);
    return 0;
}
