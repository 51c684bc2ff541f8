/* libFuzzer harness for the MessagePack reader (zk_msgpack_parse and the
   zk_value getters) and the writer's MessagePack codec (zk_writer after
   zk_writer_set_codec, zk_write_value between the codecs).

   Input: byte 0 picks the limits of one parse, the bytes after it up to
   the first C1 C1 (0xC1 is never valid MessagePack; one alone stays in
   the value) or the end are a MessagePack value, and the bytes after that
   pair, if any, are writer commands.
     bits 0-5   max_depth - 1 (1..64)
     bits 6-7   max_nodes: default (0), 3, 16, 200

   The library allocates through a wrapper that aborts on any single
   request over 1 MiB + 256 bytes per input byte: no declared length or
   count may turn into a large allocation.

   Part 1, reading. Every parse reads a malloc'd copy of exactly the value
   (ASan catches a read past the end), which must be unchanged afterwards
   (the reader does not write to its input). An independent decoder in
   this file reads the same bytes by the rules of src/value.h (every
   format family; str must be UTF-8; map keys must be str; ext, fixext,
   0xC1, NaN and infinities, a truncated value, data after it refused; a
   uint64 above INT64_MAX a double) into a list of events, the deepest
   container level reached (empty containers count) and the number of
   items started. The value is parsed with the default limits into a
   static doc, then with the limits of byte 0 into a static doc that has
   just held the same value with the default limits and into a new doc.
   Aborts when:
   - a parse returns anything but ZK_OK, ZK_EPARSE (then doc.error is set
     and error_at <= length) or ZK_ETOOBIG, or a failed parse leaves a
     root that is not ZK_TYPE_NONE;
   - it disagrees with the independent decoder: a valid value parses
     (ZK_OK, the same events: types, ints, doubles bit for bit, string,
     binary and key bytes, in order) exactly when its depth and node count
     (values and keys) are within the limits, else ZK_ETOOBIG; an invalid
     one gives ZK_EPARSE, or ZK_ETOOBIG only when what was read before the
     error already went past a limit; the limited parses of an invalid
     value give the default parse's error at the same byte, or ZK_ETOOBIG;
   - a parsed tree does not hold up when walked with first/next/key/len/
     at/get_n/get/path (as fuzz_json.c checks), every string, key and
     binary a view into the input;
   - a round trip fails: zk_write_value of the root into a MessagePack
     writer gives exactly the independent encoder's bytes (the smallest
     form of every int, str, bin and container header; doubles as
     float64), which parse again to the same events and copy again to the
     same bytes; into a JSON writer it gives a text zk_json_parse accepts,
     with the same events but binary as its base64 string (RFC 4648,
     computed here).

   Part 2, writing. The command bytes drive four writers at once with the
   same calls: a JSON one (the reference: fuzz_json.c checks it against a
   model of the rules) and three MessagePack ones, growable, on a fixed
   4 KiB malloc'd buffer, and growable with max 4096. Aborts when the
   growable MessagePack writer's error is not the JSON writer's, or one has
   a result and not the other; when its result does not parse with
   zk_msgpack_parse, is not the independent encoder's bytes for the tree
   it parses to, or does not copy (zk_write_value) to exactly the JSON
   writer's text; when the fixed and bounded writers do not give the same
   bytes for a result of at most 4096 bytes, or give anything but
   ZK_ENOSPACE / ZK_ETOOBIG for a larger one.
   A command is a byte, low nibble the call, high nibble an argument:
     0 object   1 array   2 end   3 key_n, 4 str_n: next (argument) bytes
     5 NUL-terminated: argument bit 3 key (else string), bits 0-2 length;
       15: zk_write_str(NULL)
     6 int from 8 bytes   7 int from 1 signed byte   8 int edges (16)
     9 double from 8 bytes   10 double from a table (14 NaN, 15 -inf)
     11 bool   12 null   13 zk_write_value(parsed root), up to 4 times
       (else end)   14 reset when argument 0, else end
     15 binary: next (argument * 17) bytes */
#define _GNU_SOURCE /* the library's includes: before any system header */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The library's allocations: none larger than alloc_cap. */
static size_t alloc_cap = (size_t)1 << 20;
static void *cap_realloc(void *p, size_t n) {
    if (n > alloc_cap) {
        fprintf(stderr, "fuzz_msgpack: the library asked for %lu bytes (at most %lu here)\n",
                (unsigned long)n, (unsigned long)alloc_cap);
        abort();
    }
    return realloc(p, n ? n : 1);
}
#define ZK_MALLOC(n) cap_realloc(NULL, n)
#define ZK_REALLOC(p, n) cap_realloc(p, n)
#define ZK_FREE(p) free(p)
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <float.h>
#include <math.h>

#define CHECK(c) do { if (!(c)) { \
    fprintf(stderr, "fuzz_msgpack: invariant broken at line %d: %s\n", __LINE__, #c); \
    abort(); } } while (0)

#define FIXED_CAP 4096
#define MAX_DEPTH ZK_DOC_MAX_DEPTH

static const uint32_t node_limits[4] = {0, 3, 16, 200};

static zk_doc doc_def, doc_lim, doc_again, doc_json; /* reused from input to input */
static zk_writer mp_out, json_out, grow_json, grow_mp, bounded_mp;

static char *copy_exact(const void *data, size_t n) {
    char *p = (char *)malloc(n ? n : 1);
    CHECK(p != NULL);
    if (n) memcpy(p, data, n);
    return p;
}

static uint64_t bits_of(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static int same_handle(zk_value a, zk_value b) {
    return a.doc == b.doc && a.at == b.at;
}

static int same_str(zk_str a, zk_str b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* s lies inside buf[0..len) (an empty view may sit at buf + len). */
static void check_view(zk_str s, const char *buf, size_t len) {
    CHECK(s.ptr != NULL);
    CHECK(s.ptr >= buf && s.ptr <= buf + len);
    CHECK(s.len <= (size_t)(buf + len - s.ptr));
}

/* ---- byte strings ---- */

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
static void text_byte(text *t, int c) {
    char b = (char)c;
    text_add(t, &b, 1);
}
static void text_be(text *t, uint64_t v, int n) {
    while (n--) text_byte(t, (int)(v >> (8 * n) & 0xFF));
}

/* ---- UTF-8 and base64, written here independently of the library ---- */

static int utf8_ok(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i], need, cp, min;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) need = 1, cp = c & 0x1F, min = 0x80;
        else if (c >= 0xE0 && c <= 0xEF) need = 2, cp = c & 0x0F, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4) need = 3, cp = c & 0x07, min = 0x10000;
        else return 0;
        if (n - i - 1 < need) return 0;
        for (i++; need; need--, i++) {
            if ((s[i] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    }
    return 1;
}

static void base64(text *t, const unsigned char *p, size_t n) {
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        text_byte(t, a[v >> 18]);
        text_byte(t, a[v >> 12 & 63]);
        text_byte(t, a[v >> 6 & 63]);
        text_byte(t, a[v & 63]);
    }
    if (n - i == 1) {
        text_byte(t, a[p[i] >> 2]);
        text_byte(t, a[(p[i] & 3) << 4]);
        text_add(t, "==", 2);
    } else if (n - i == 2) {
        text_byte(t, a[p[i] >> 2]);
        text_byte(t, a[(p[i] & 3) << 4 | p[i + 1] >> 4]);
        text_byte(t, a[(p[i + 1] & 15) << 2]);
        text_byte(t, '=');
    }
}

/* ---- events: a value as the calls that would write it ---- */

enum { EV_OBJECT = 1, EV_ARRAY, EV_END, EV_KEY, EV_STR, EV_BIN, EV_INT, EV_DOUBLE, EV_BOOL, EV_NULL };

typedef struct event {
    int kind;
    zk_str s;       /* EV_KEY, EV_STR, EV_BIN */
    int64_t i;      /* EV_INT, EV_BOOL */
    uint64_t bits;  /* EV_DOUBLE */
} event;

typedef struct events {
    event *e;
    size_t n, cap;
} events;

static void ev_add(events *l, int kind, const void *s, size_t len, int64_t i, uint64_t bits) {
    event *e;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->e = (event *)realloc(l->e, l->cap * sizeof *l->e);
        CHECK(l->e != NULL);
    }
    e = &l->e[l->n++];
    e->kind = kind;
    e->s.ptr = (const char *)s;
    e->s.len = len;
    e->i = i;
    e->bits = bits;
}

static void flatten(events *l, zk_value v) {
    zk_value e;
    zk_str s;
    int t = zk_value_type(v);
    switch (t) {
    case ZK_TYPE_NULL: ev_add(l, EV_NULL, NULL, 0, 0, 0); break;
    case ZK_TYPE_BOOL: ev_add(l, EV_BOOL, NULL, 0, zk_value_bool(v, 0), 0); break;
    case ZK_TYPE_INT: ev_add(l, EV_INT, NULL, 0, zk_value_int(v, 0), 0); break;
    case ZK_TYPE_DOUBLE: ev_add(l, EV_DOUBLE, NULL, 0, 0, bits_of(zk_value_double(v, 0))); break;
    case ZK_TYPE_STRING:
    case ZK_TYPE_BINARY:
        s = zk_value_str(v);
        ev_add(l, t == ZK_TYPE_STRING ? EV_STR : EV_BIN, s.ptr, s.len, 0, 0);
        break;
    case ZK_TYPE_ARRAY:
    case ZK_TYPE_OBJECT:
        ev_add(l, t == ZK_TYPE_ARRAY ? EV_ARRAY : EV_OBJECT, NULL, 0, 0, 0);
        for (e = zk_value_first(v); zk_value_type(e); e = zk_value_next(e)) {
            if (t == ZK_TYPE_OBJECT) {
                s = zk_value_key(e);
                ev_add(l, EV_KEY, s.ptr, s.len, 0, 0);
            }
            flatten(l, e);
        }
        ev_add(l, EV_END, NULL, 0, 0, 0);
        break;
    default:
        CHECK(0);
    }
}

/* a and b are the same; with json, b came through JSON: binary in a is a
   string in b holding its base64. */
static void same_events(const events *a, const events *b, int json) {
    size_t i;
    text b64 = {NULL, 0, 0};
    CHECK(a->n == b->n);
    for (i = 0; i < a->n; i++) {
        const event *x = &a->e[i], *y = &b->e[i];
        if (json && x->kind == EV_BIN) {
            CHECK(y->kind == EV_STR);
            b64.len = 0;
            base64(&b64, (const unsigned char *)x->s.ptr, x->s.len);
            CHECK(y->s.len == b64.len && (b64.len == 0 || memcmp(y->s.ptr, b64.p, b64.len) == 0));
            continue;
        }
        CHECK(x->kind == y->kind);
        if (x->kind == EV_INT || x->kind == EV_BOOL) CHECK(x->i == y->i);
        if (x->kind == EV_DOUBLE) CHECK(x->bits == y->bits);
        if (x->kind == EV_STR || x->kind == EV_KEY || x->kind == EV_BIN) CHECK(same_str(x->s, y->s));
    }
    free(b64.p);
}

/* ---- the independent decoder ---- */

typedef struct ref_result {
    int valid;
    uint32_t depth;  /* deepest container level whose header was read (a root container: 1) */
    size_t started;  /* items whose first byte was read; for a valid value, its nodes */
} ref_result;

static uint64_t be(const uint8_t *p, int n) {
    uint64_t v = 0;
    int i;
    for (i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

static void ref_decode(const uint8_t *p, size_t n, events *ev, ref_result *r) {
    uint64_t *left = (uint64_t *)malloc((n + 1) * sizeof *left);
    unsigned char *is_map = (unsigned char *)malloc(n + 1);
    size_t at = 0, depth = 0;
    CHECK(left != NULL && is_map != NULL);
    memset(r, 0, sizeof *r);
    ev->n = 0;
    for (;;) {
        int key = depth && is_map[depth - 1] && left[depth - 1] % 2 == 0;
        int kind = 0, lenb = 0, container = 0;
        uint64_t len = 0, u;
        uint8_t c;
        if (at >= n) goto invalid;
        c = p[at++];
        r->started++;
        if (c <= 0x7f) {
            kind = EV_INT;
            u = c;
        } else if (c >= 0xe0) {
            kind = EV_INT;
            u = (uint64_t)(int64_t)(int8_t)c;
        } else if (c <= 0x8f) {
            kind = EV_OBJECT, len = c & 15;
        } else if (c <= 0x9f) {
            kind = EV_ARRAY, len = c & 15;
        } else if (c <= 0xbf) {
            kind = EV_STR, len = c & 31;
        } else if (c == 0xc0) {
            kind = EV_NULL;
        } else if (c == 0xc2 || c == 0xc3) {
            kind = EV_BOOL;
        } else if (c >= 0xc4 && c <= 0xc6) {
            kind = EV_BIN, lenb = 1 << (c - 0xc4);
        } else if (c == 0xca || c == 0xcb) {
            kind = EV_DOUBLE;
        } else if (c >= 0xcc && c <= 0xd3) {
            kind = EV_INT;
        } else if (c >= 0xd9 && c <= 0xdb) {
            kind = EV_STR, lenb = 1 << (c - 0xd9);
        } else if (c == 0xdc || c == 0xdd) {
            kind = EV_ARRAY, lenb = c == 0xdc ? 2 : 4;
        } else if (c == 0xde || c == 0xdf) {
            kind = EV_OBJECT, lenb = c == 0xde ? 2 : 4;
        } else {
            goto invalid; /* 0xc1, ext 0xc7-0xc9, fixext 0xd4-0xd8 */
        }
        if (key && kind != EV_STR) goto invalid;
        if (lenb) {
            if (n - at < (size_t)lenb) goto invalid;
            len = be(p + at, lenb);
            at += (size_t)lenb;
        }
        switch (kind) {
        case EV_INT:
            if (c >= 0xcc && c <= 0xd3) {
                int w = 1 << ((c - 0xcc) & 3), sign = c >= 0xd0;
                if (n - at < (size_t)w) goto invalid;
                u = be(p + at, w);
                at += (size_t)w;
                if (sign && w < 8 && (u >> (8 * w - 1)) & 1) u |= ~(uint64_t)0 << (8 * w);
                if (!sign && u > (uint64_t)INT64_MAX) {
                    double d = (double)u;
                    ev_add(ev, EV_DOUBLE, NULL, 0, 0, bits_of(d));
                    break;
                }
            }
            ev_add(ev, EV_INT, NULL, 0, (int64_t)u, 0);
            break;
        case EV_DOUBLE:
            if (c == 0xca) {
                float f;
                uint32_t b;
                if (n - at < 4) goto invalid;
                b = (uint32_t)be(p + at, 4);
                at += 4;
                if ((b >> 23 & 0xff) == 0xff) goto invalid;
                memcpy(&f, &b, 4);
                ev_add(ev, EV_DOUBLE, NULL, 0, 0, bits_of((double)f));
            } else {
                if (n - at < 8) goto invalid;
                u = be(p + at, 8);
                at += 8;
                if ((u >> 52 & 0x7ff) == 0x7ff) goto invalid;
                ev_add(ev, EV_DOUBLE, NULL, 0, 0, u);
            }
            break;
        case EV_NULL: ev_add(ev, EV_NULL, NULL, 0, 0, 0); break;
        case EV_BOOL: ev_add(ev, EV_BOOL, NULL, 0, c & 1, 0); break;
        case EV_STR:
        case EV_BIN:
            if (len > n - at) goto invalid;
            if (kind == EV_STR && !utf8_ok(p + at, (size_t)len)) goto invalid;
            ev_add(ev, key ? EV_KEY : kind, p + at, (size_t)len, 0, 0);
            at += (size_t)len;
            break;
        default: /* a container */
            container = 1;
            ev_add(ev, kind, NULL, 0, 0, 0);
            break;
        }
        if (depth) left[depth - 1]--;
        if (container) {
            is_map[depth] = kind == EV_OBJECT;
            left[depth] = kind == EV_OBJECT ? len * 2 : len;
            depth++;
            if (depth > r->depth) r->depth = (uint32_t)depth;
        }
        while (depth && left[depth - 1] == 0) {
            ev_add(ev, EV_END, NULL, 0, 0, 0);
            depth--;
        }
        if (!depth) break;
    }
    if (at != n) goto invalid; /* data after the value */
    r->valid = 1;
    free(left);
    free(is_map);
    return;
invalid:
    r->valid = 0;
    free(left);
    free(is_map);
}

/* ---- the independent encoder: the smallest form of everything ---- */

static void enc_uint(text *t, uint64_t u) {
    if (u < 128) text_byte(t, (int)u);
    else if (u < 256) text_byte(t, 0xcc), text_be(t, u, 1);
    else if (u < 65536) text_byte(t, 0xcd), text_be(t, u, 2);
    else if (u < UINT64_C(4294967296)) text_byte(t, 0xce), text_be(t, u, 4);
    else text_byte(t, 0xcf), text_be(t, u, 8);
}
static void enc_int(text *t, int64_t v) {
    if (v >= 0) enc_uint(t, (uint64_t)v);
    else if (v >= -32) text_byte(t, (int)(v & 0xFF));
    else if (v >= -128) text_byte(t, 0xd0), text_be(t, (uint64_t)v, 1);
    else if (v >= -32768) text_byte(t, 0xd1), text_be(t, (uint64_t)v, 2);
    else if (v >= INT64_C(-2147483648)) text_byte(t, 0xd2), text_be(t, (uint64_t)v, 4);
    else text_byte(t, 0xd3), text_be(t, (uint64_t)v, 8);
}
static void enc_head(text *t, size_t n, int fix, int fix_max, int t8, int t16, int t32) {
    if (fix && n <= (size_t)fix_max) text_byte(t, fix | (int)n);
    else if (t8 && n < 256) text_byte(t, t8), text_be(t, n, 1);
    else if (n < 65536) text_byte(t, t16), text_be(t, n, 2);
    else text_byte(t, t32), text_be(t, n, 4);
}
static void encode(text *t, zk_value v) {
    zk_value e;
    zk_str s;
    switch (zk_value_type(v)) {
    case ZK_TYPE_NULL: text_byte(t, 0xc0); break;
    case ZK_TYPE_BOOL: text_byte(t, zk_value_bool(v, 0) ? 0xc3 : 0xc2); break;
    case ZK_TYPE_INT: enc_int(t, zk_value_int(v, 0)); break;
    case ZK_TYPE_DOUBLE: text_byte(t, 0xcb), text_be(t, bits_of(zk_value_double(v, 0)), 8); break;
    case ZK_TYPE_STRING:
        s = zk_value_str(v);
        enc_head(t, s.len, 0xa0, 31, 0xd9, 0xda, 0xdb);
        text_add(t, s.ptr, s.len);
        break;
    case ZK_TYPE_BINARY:
        s = zk_value_str(v);
        enc_head(t, s.len, 0, 0, 0xc4, 0xc5, 0xc6);
        text_add(t, s.ptr, s.len);
        break;
    case ZK_TYPE_ARRAY:
        enc_head(t, zk_value_len(v), 0x90, 15, 0, 0xdc, 0xdd);
        for (e = zk_value_first(v); zk_value_type(e); e = zk_value_next(e)) encode(t, e);
        break;
    case ZK_TYPE_OBJECT:
        enc_head(t, zk_value_len(v), 0x80, 15, 0, 0xde, 0xdf);
        for (e = zk_value_first(v); zk_value_type(e); e = zk_value_next(e)) {
            s = zk_value_key(e);
            enc_head(t, s.len, 0xa0, 31, 0xd9, 0xda, 0xdb);
            text_add(t, s.ptr, s.len);
            encode(t, e);
        }
        break;
    default:
        CHECK(0);
    }
}

/* ---- walking a parsed tree ---- */

typedef struct walk {
    const zk_doc *doc;
    zk_value root;
    const char *buf;  /* the parsed buffer */
    size_t len;
    size_t values;    /* every value, members and elements included */
    size_t keys;
    uint32_t nest;    /* deepest container nesting: 0 for a scalar root */
    char path[256];   /* zk_value_path of the value being walked */
} walk;

static const char *const type_names[] = {"none", "null", "bool", "int", "double",
                                         "string", "binary", "array", "object"};

#define IDEF1 ((int64_t)0x5A5A5A5A5A5A5A5Bll)
#define IDEF2 ((int64_t)-7)
#define DDEF1 0.25
#define DDEF2 (-1e300)

/* The typed getters agree with the type. */
static void check_getters(zk_value v, int t) {
    int64_t i1 = zk_value_int(v, IDEF1), i2 = zk_value_int(v, IDEF2);
    double d1 = zk_value_double(v, DDEF1), d2 = zk_value_double(v, DDEF2);
    int b1 = zk_value_bool(v, 0), b2 = zk_value_bool(v, 1);
    zk_str s = zk_value_str(v);
    if (t != ZK_TYPE_INT && t != ZK_TYPE_DOUBLE) CHECK(i1 == IDEF1 && i2 == IDEF2);
    if (t != ZK_TYPE_INT && t != ZK_TYPE_DOUBLE)
        CHECK(bits_of(d1) == bits_of(DDEF1) && bits_of(d2) == bits_of(DDEF2));
    if (t != ZK_TYPE_BOOL) CHECK(b1 == 0 && b2 == 1);
    if (t != ZK_TYPE_STRING && t != ZK_TYPE_BINARY) CHECK(s.ptr == NULL && s.len == 0);
    if (t == ZK_TYPE_STRING || t == ZK_TYPE_BINARY) CHECK(zk_value_len(v) == s.len);
    else if (t != ZK_TYPE_STRING && t != ZK_TYPE_ARRAY && t != ZK_TYPE_OBJECT) CHECK(zk_value_len(v) == 0);
    switch (t) {
    case ZK_TYPE_BOOL:
        CHECK(b1 == b2 && (b1 == 0 || b1 == 1));
        break;
    case ZK_TYPE_INT:
        CHECK(i1 == i2);
        CHECK(bits_of(d1) == bits_of(d2) && d1 == (double)i1);
        break;
    case ZK_TYPE_DOUBLE:
        CHECK(bits_of(d1) == bits_of(d2));
        CHECK(!isnan(d1) && !isinf(d1));
        if (d1 == floor(d1) && d1 >= -9223372036854775808.0 && d1 < 9223372036854775808.0)
            CHECK(i1 == i2 && i1 == (int64_t)d1);
        else
            CHECK(i1 == IDEF1 && i2 == IDEF2);
        break;
    default:
        break;
    }
}

/* A key a path can name: not empty, none of . [ ] NUL. */
static int path_key(zk_str k) {
    size_t i;
    if (k.len == 0 || k.len > 48) return 0;
    for (i = 0; i < k.len; i++)
        if (k.ptr[i] == '.' || k.ptr[i] == '[' || k.ptr[i] == ']' || k.ptr[i] == '\0') return 0;
    return 1;
}

/* The member get_n(obj, key) finds is the first one with that key. */
static void check_lookup(zk_value obj, zk_value member, zk_str key) {
    zk_value g = zk_value_get_n(obj, key.ptr, key.len), e;
    CHECK(zk_value_type(g) != ZK_TYPE_NONE);
    for (e = zk_value_first(obj); zk_value_type(e); e = zk_value_next(e)) {
        if (same_str(zk_value_key(e), key)) {
            CHECK(same_handle(e, g));
            break;
        }
        CHECK(!same_handle(e, member) && !same_handle(e, g));
    }
    CHECK(zk_value_type(e) != ZK_TYPE_NONE);
    if (key.len < 64 && memchr(key.ptr, '\0', key.len) == NULL) {
        char z[64];
        memcpy(z, key.ptr, key.len);
        z[key.len] = '\0';
        CHECK(same_handle(zk_value_get(obj, z), g));
    }
}

static void walk_value(walk *w, zk_value v, uint32_t level, size_t plen, int pok) {
    int t = zk_value_type(v);
    size_t n = 0, len;
    zk_value e, last = {NULL, 0};
    CHECK(t >= ZK_TYPE_NULL && t <= ZK_TYPE_OBJECT);
    CHECK(v.doc == w->doc);
    CHECK(strcmp(zk_type_name(t), type_names[t]) == 0);
    w->values++;
    CHECK(w->values <= w->len + 1);
    check_getters(v, t);
    if (pok && plen) CHECK(same_handle(zk_value_path(w->root, w->path), v));
    if (t == ZK_TYPE_STRING || t == ZK_TYPE_BINARY) {
        zk_str s = zk_value_str(v);
        check_view(s, w->buf, w->len);
        if (t == ZK_TYPE_STRING) {
            CHECK(zk_value_len(v) == s.len);
            CHECK(utf8_ok((const unsigned char *)s.ptr, s.len));
        }
    }
    if (t != ZK_TYPE_OBJECT) {
        CHECK(zk_value_type(zk_value_get_n(v, "a", 1)) == ZK_TYPE_NONE);
        CHECK(zk_value_type(zk_value_get(v, "")) == ZK_TYPE_NONE);
    }
    if (t != ZK_TYPE_ARRAY && t != ZK_TYPE_OBJECT) {
        CHECK(zk_value_type(zk_value_first(v)) == ZK_TYPE_NONE);
        CHECK(zk_value_type(zk_value_at(v, 0)) == ZK_TYPE_NONE);
        return;
    }
    CHECK(level < MAX_DEPTH);
    if (level + 1 > w->nest) w->nest = level + 1;
    len = zk_value_len(v);
    for (e = zk_value_first(v); zk_value_type(e); e = zk_value_next(e), n++) {
        size_t elen = plen;
        int eok = 0;
        CHECK(n < len);
        if (t == ZK_TYPE_ARRAY) {
            CHECK(zk_value_key(e).len == 0);
            if (n >= 64 && n % 61 != 0) {
                walk_value(w, e, level + 1, plen, 0); /* zk_value_at and paths are O(n) */
                last = e;
                continue;
            }
            CHECK(same_handle(zk_value_at(v, n), e));
            if (pok && plen > 0 && plen + 24 < sizeof w->path) {
                elen += (size_t)sprintf(w->path + plen, "[%lu]", (unsigned long)n);
                eok = 1;
            }
        } else {
            zk_str k = zk_value_key(e);
            check_view(k, w->buf, w->len);
            CHECK(utf8_ok((const unsigned char *)k.ptr, k.len));
            w->keys++;
            if (n < 64) {
                check_lookup(v, e, k);
                if (pok && path_key(k) && plen + 1 + k.len + 1 < sizeof w->path &&
                    same_handle(zk_value_get_n(v, k.ptr, k.len), e)) {
                    if (plen) w->path[elen++] = '.';
                    memcpy(w->path + elen, k.ptr, k.len);
                    elen += k.len;
                    w->path[elen] = '\0';
                    eok = 1;
                }
            }
        }
        walk_value(w, e, level + 1, elen, eok);
        w->path[plen] = '\0';
        last = e;
    }
    CHECK(n == len);
    if (t == ZK_TYPE_ARRAY) {
        CHECK(zk_value_type(zk_value_at(v, n)) == ZK_TYPE_NONE);
        CHECK(zk_value_type(zk_value_at(v, (size_t)-1)) == ZK_TYPE_NONE);
        if (n) CHECK(same_handle(zk_value_at(v, n - 1), last));
    } else {
        CHECK(zk_value_type(zk_value_get_n(v, "\xff", 1)) == ZK_TYPE_NONE);
    }
}

static void walk_doc(walk *w, const zk_doc *doc, const char *buf, size_t len) {
    memset(w, 0, sizeof *w);
    w->doc = doc;
    w->root = zk_doc_root(doc);
    w->buf = buf;
    w->len = len;
    CHECK(w->root.doc == doc);
    CHECK(zk_value_key(w->root).len == 0);
    CHECK(zk_value_type(zk_value_next(w->root)) == ZK_TYPE_NONE);
    walk_value(w, w->root, 0, 0, 1);
}

/* ---- part 1: reading ---- */

static events ev_ref, ev_got, ev_json; /* reused */

static void check_error(const zk_doc *doc, int rc, size_t n) {
    CHECK(rc == ZK_OK || rc == ZK_EPARSE || rc == ZK_ETOOBIG);
    if (rc == ZK_EPARSE) {
        CHECK(doc->error != NULL && doc->error[0] != '\0');
        CHECK(doc->error_at <= n);
    }
    if (rc != ZK_OK) CHECK(zk_value_type(zk_doc_root(doc)) == ZK_TYPE_NONE);
}

/* rc from a parse with these limits agrees with the independent decoder. */
static void check_against_ref(const zk_doc *doc, int rc, const ref_result *ref, uint32_t max_depth,
                              uint32_t max_nodes) {
    if (ref->valid) {
        int too_big = ref->depth > max_depth || ref->started > max_nodes;
        if (rc != (too_big ? ZK_ETOOBIG : ZK_OK)) {
            fprintf(stderr, "fuzz_msgpack: limits depth %lu nodes %lu, value depth %lu nodes %lu: %s",
                    (unsigned long)max_depth, (unsigned long)max_nodes, (unsigned long)ref->depth,
                    (unsigned long)ref->started, zk_err_name(rc));
            if (rc == ZK_EPARSE) fprintf(stderr, " (%s at %lu)", doc->error, (unsigned long)doc->error_at);
            fprintf(stderr, "\n");
            CHECK(rc == (too_big ? ZK_ETOOBIG : ZK_OK));
        }
        if (rc == ZK_OK) {
            ev_got.n = 0;
            flatten(&ev_got, zk_doc_root(doc));
            same_events(&ev_ref, &ev_got, 0);
        }
    } else {
        if (rc == ZK_OK) fprintf(stderr, "fuzz_msgpack: an invalid value was accepted\n");
        CHECK(rc == ZK_EPARSE || rc == ZK_ETOOBIG);
        if (rc == ZK_ETOOBIG) CHECK(ref->depth > max_depth || ref->started > max_nodes);
    }
}

/* Copies the tree with zk_write_value into both codecs and checks both. */
static void round_trip(zk_value root, const events *want) {
    zk_str r1, r2;
    text enc = {NULL, 0, 0};
    char *p;
    walk w;
    /* to MessagePack: the smallest form, which reads back the same */
    zk_writer_reset(&mp_out);
    zk_write_value(&mp_out, root);
    CHECK(zk_writer_error(&mp_out) == ZK_OK);
    r1 = zk_writer_result(&mp_out);
    CHECK(r1.ptr != NULL && r1.len > 0);
    encode(&enc, root);
    CHECK(r1.len == enc.len && memcmp(r1.ptr, enc.p, enc.len) == 0);
    p = copy_exact(r1.ptr, r1.len);
    CHECK(zk_msgpack_parse(&doc_again, p, r1.len) == ZK_OK);
    walk_doc(&w, &doc_again, p, r1.len);
    ev_got.n = 0;
    flatten(&ev_got, zk_doc_root(&doc_again));
    same_events(want, &ev_got, 0);
    zk_writer_reset(&mp_out);
    zk_write_value(&mp_out, zk_doc_root(&doc_again));
    r2 = zk_writer_result(&mp_out);
    CHECK(zk_writer_error(&mp_out) == ZK_OK);
    CHECK(r2.len == enc.len && memcmp(r2.ptr, enc.p, enc.len) == 0);
    free(p);
    free(enc.p);
    /* to JSON: binary as base64 */
    zk_writer_reset(&json_out);
    zk_write_value(&json_out, root);
    CHECK(zk_writer_error(&json_out) == ZK_OK);
    r1 = zk_writer_result(&json_out);
    CHECK(r1.ptr != NULL && r1.len > 0);
    CHECK(utf8_ok((const unsigned char *)r1.ptr, r1.len));
    p = copy_exact(r1.ptr, r1.len);
    if (zk_json_parse(&doc_json, p, r1.len) != ZK_OK) {
        fprintf(stderr, "fuzz_msgpack: the JSON copy does not parse (%s at %lu): %.*s\n",
                doc_json.error ? doc_json.error : "?", (unsigned long)doc_json.error_at,
                (int)r1.len, r1.ptr);
        CHECK(0);
    }
    ev_json.n = 0;
    flatten(&ev_json, zk_doc_root(&doc_json));
    same_events(want, &ev_json, 1);
    free(p);
}

/* Returns 1 when the value parsed with the default limits (then *def_buf
   stays allocated, for part 2, and *def describes the tree). */
static int read_msgpack(const uint8_t *data, size_t n, uint8_t cfg, char **def_buf, walk *def) {
    uint32_t max_depth = 1 + (cfg & 63), max_nodes = node_limits[cfg >> 6];
    uint32_t eff_nodes = max_nodes ? max_nodes : ZK_DOC_MAX_NODES;
    char *bd = copy_exact(data, n), *bl;
    ref_result ref;
    zk_doc fresh;
    int rd, rl;

    ref_decode(data, n, &ev_ref, &ref);

    doc_def.max_depth = 0;
    doc_def.max_nodes = 0;
    rd = zk_msgpack_parse(&doc_def, bd, n);
    CHECK(n == 0 || memcmp(bd, data, n) == 0); /* the input is not written to */
    check_error(&doc_def, rd, n);
    check_against_ref(&doc_def, rd, &ref, MAX_DEPTH, ZK_DOC_MAX_NODES);
    if (rd == ZK_OK) {
        walk_doc(def, &doc_def, bd, n);
        CHECK(def->nest <= MAX_DEPTH && def->values + def->keys <= ZK_DOC_MAX_NODES);
        CHECK(def->values + def->keys == ref.started);
        round_trip(def->root, &ev_ref);
    }

    /* The limited parse, into a reused doc that has just held this value
       with the default limits (a crash reproduces from one input)... */
    bl = copy_exact(data, n);
    doc_lim.max_depth = 0;
    doc_lim.max_nodes = 0;
    CHECK(zk_msgpack_parse(&doc_lim, bl, n) == rd);
    if (rd == ZK_EPARSE) CHECK(doc_lim.error_at == doc_def.error_at);
    doc_lim.max_depth = max_depth;
    doc_lim.max_nodes = max_nodes;
    rl = zk_msgpack_parse(&doc_lim, bl, n);
    check_error(&doc_lim, rl, n);
    check_against_ref(&doc_lim, rl, &ref, max_depth, eff_nodes);
    if (rd == ZK_EPARSE && rl == ZK_EPARSE)
        CHECK(doc_lim.error_at == doc_def.error_at && strcmp(doc_lim.error, doc_def.error) == 0);
    free(bl);
    /* ...and into a new one */
    bl = copy_exact(data, n);
    zk_doc_init(&fresh);
    fresh.max_depth = max_depth;
    fresh.max_nodes = max_nodes;
    rl = zk_msgpack_parse(&fresh, bl, n);
    check_error(&fresh, rl, n);
    check_against_ref(&fresh, rl, &ref, max_depth, eff_nodes);
    if (rd == ZK_EPARSE && rl == ZK_EPARSE)
        CHECK(fresh.error_at == doc_def.error_at && strcmp(fresh.error, doc_def.error) == 0);
    zk_doc_free(&fresh);
    free(bl);

    if (rd == ZK_OK) {
        /* paths from the fuzzer: whatever they say, no crash */
        char path[48];
        size_t k = n < sizeof path - 1 ? n : sizeof path - 1;
        memcpy(path, data, k);
        path[k] = '\0';
        (void)zk_value_type(zk_value_path(def->root, path));
        *def_buf = bd;
    } else {
        free(bd);
    }
    return rd == ZK_OK;
}

/* ---- part 2: writing ---- */

static const double edge_doubles[14] = {
    0.0, -0.0, 0.5, 1.0, -1.5, 0.1, 100.0, 1e21, DBL_MAX, DBL_MIN, 5e-324,
    123456789012345678.0, 9223372036854775808.0, 1.0 / 3.0};
static const int64_t edge_ints[16] = {
    INT64_MIN, INT64_MAX, 0, -1, 127, 128, -32, -33, 255, 256, 65535, 65536,
    INT64_C(4294967295), INT64_C(4294967296), INT64_C(-2147483648), INT64_C(-2147483649)};

typedef struct reader {
    const uint8_t *p;
    size_t n, at;
} reader;

static unsigned byte_of(reader *r) {
    return r->at < r->n ? r->p[r->at++] : 0;
}

static uint64_t u64_of(reader *r) {
    uint64_t u = 0;
    int k;
    for (k = 0; k < 8; k++) u |= (uint64_t)byte_of(r) << (8 * k);
    return u;
}

/* The next len bytes (fewer at the end of the input). */
static zk_str bytes_of(reader *r, size_t len) {
    zk_str s;
    if (len > r->n - r->at) len = r->n - r->at;
    s.ptr = (const char *)r->p + r->at;
    s.len = len;
    r->at += len;
    return s;
}

#define ALL(call) do { int k_; for (k_ = 0; k_ < 4; k_++) { zk_writer *w = ws[k_]; call; } } while (0)

static void write_commands(const uint8_t *cmd, size_t n, int have_root, const walk *parsed) {
    char *fixed = (char *)malloc(FIXED_CAP);
    zk_writer fw;
    zk_writer *ws[4];
    reader r;
    zk_str rj, rm, rf, rb;
    int write_values = 0, ej, em, ef, eb;
    CHECK(fixed != NULL);
    zk_writer_init(&fw, fixed, FIXED_CAP);
    CHECK(zk_writer_set_codec(&fw, ZK_CODEC_MSGPACK) == ZK_OK);
    zk_writer_reset(&grow_json);
    zk_writer_reset(&grow_mp);
    zk_writer_reset(&bounded_mp);
    bounded_mp.max = FIXED_CAP;
    ws[0] = &grow_json;
    ws[1] = &grow_mp;
    ws[2] = &fw;
    ws[3] = &bounded_mp;
    r.p = cmd;
    r.n = n;
    r.at = 0;
    while (r.at < r.n) {
        unsigned b = byte_of(&r), arg = b >> 4;
        switch (b & 15) {
        case 0: ALL(zk_write_object(w)); break;
        case 1: ALL(zk_write_array(w)); break;
        case 2: ALL(zk_write_end(w)); break;
        case 3:
        case 4: { /* key / string, length-delimited */
            zk_str s = bytes_of(&r, arg);
            char *c = copy_exact(s.ptr, s.len);
            if ((b & 15) == 3) ALL(zk_write_key_n(w, c, s.len));
            else ALL(zk_write_str_n(w, c, s.len));
            free(c);
            break;
        }
        case 5: { /* key / string, NUL-terminated; NULL writes null */
            zk_str s;
            char *c;
            if (arg == 15) {
                ALL(zk_write_str(w, NULL));
                break;
            }
            s = bytes_of(&r, arg & 7);
            c = (char *)malloc(s.len + 1);
            CHECK(c != NULL);
            if (s.len) memcpy(c, s.ptr, s.len);
            c[s.len] = '\0';
            if (arg & 8) ALL(zk_write_key(w, c));
            else ALL(zk_write_str(w, c));
            free(c);
            break;
        }
        case 6: {
            int64_t v = (int64_t)u64_of(&r);
            ALL(zk_write_int(w, v));
            break;
        }
        case 7: {
            int64_t v = (int64_t)(signed char)byte_of(&r);
            ALL(zk_write_int(w, v));
            break;
        }
        case 8: ALL(zk_write_int(w, edge_ints[arg])); break;
        case 9: { /* double, 8 raw bytes: NaN and infinities too */
            uint64_t u = u64_of(&r);
            double d;
            memcpy(&d, &u, sizeof d);
            ALL(zk_write_double(w, d));
            break;
        }
        case 10: {
            double d = arg == 15 ? -HUGE_VAL : arg == 14 ? nan("") : edge_doubles[arg];
            ALL(zk_write_double(w, d));
            break;
        }
        case 11: ALL(zk_write_bool(w, (int)(arg & 1))); break;
        case 12: ALL(zk_write_null(w)); break;
        case 13: /* the parsed document, a few times at most */
            if (!have_root || write_values == 4) {
                ALL(zk_write_end(w));
                break;
            }
            write_values++;
            ALL(zk_write_value(w, parsed->root));
            break;
        case 14:
            if (arg == 0) ALL(zk_writer_reset(w));
            else ALL(zk_write_end(w));
            break;
        default: { /* binary */
            zk_str s = bytes_of(&r, arg * 17);
            char *c = copy_exact(s.ptr, s.len);
            ALL(zk_write_binary(w, c, s.len));
            free(c);
            break;
        }
        }
    }
    rj = zk_writer_result(&grow_json);
    rm = zk_writer_result(&grow_mp);
    rf = zk_writer_result(&fw);
    rb = zk_writer_result(&bounded_mp);
    ej = zk_writer_error(&grow_json);
    em = zk_writer_error(&grow_mp);
    ef = zk_writer_error(&fw);
    eb = zk_writer_error(&bounded_mp);

    /* {NULL, 0} or a value, and only without an error */
    CHECK((rj.ptr == NULL) == (rj.len == 0) && (rm.ptr == NULL) == (rm.len == 0) &&
          (rf.ptr == NULL) == (rf.len == 0) && (rb.ptr == NULL) == (rb.len == 0));
    if (rf.ptr) CHECK(ef == ZK_OK && rf.ptr == fixed && rf.len <= FIXED_CAP);
    if (rm.ptr) CHECK(em == ZK_OK);
    if (rb.ptr) CHECK(eb == ZK_OK && rb.len <= FIXED_CAP);

    /* the same rules as the JSON writer */
    if (em != ej) fprintf(stderr, "fuzz_msgpack: JSON writer %s, MessagePack writer %s\n",
                          zk_err_name(ej), zk_err_name(em));
    CHECK(em == ej);
    CHECK((rm.ptr != NULL) == (rj.ptr != NULL));
    if (rm.ptr) {
        char *p = copy_exact(rm.ptr, rm.len);
        text enc = {NULL, 0, 0};
        zk_writer back;
        walk w;
        doc_again.max_nodes = UINT32_MAX; /* up to four copies of the parsed root */
        CHECK(zk_msgpack_parse(&doc_again, p, rm.len) == ZK_OK);
        doc_again.max_nodes = 0;
        walk_doc(&w, &doc_again, p, rm.len);
        encode(&enc, zk_doc_root(&doc_again));
        CHECK(enc.len == rm.len && memcmp(enc.p, rm.ptr, rm.len) == 0);
        zk_writer_init(&back, NULL, 0);
        zk_write_value(&back, zk_doc_root(&doc_again));
        CHECK(same_str(zk_writer_result(&back), rj));
        zk_writer_free(&back);
        free(enc.p);
        free(p);
    }

    /* the fixed and the bounded writers against the growable one */
    if (rm.ptr && rm.len <= FIXED_CAP) {
        if (!same_str(rf, rm) || !same_str(rb, rm))
            fprintf(stderr, "fuzz_msgpack: a %lu-byte result; fixed buffer %s, max %d: %s\n",
                    (unsigned long)rm.len, zk_err_name(ef), FIXED_CAP, zk_err_name(eb));
        CHECK(same_str(rf, rm));
        CHECK(same_str(rb, rm));
    } else if (rm.ptr) {
        CHECK(rf.ptr == NULL && ef == ZK_ENOSPACE);
        CHECK(rb.ptr == NULL && eb == ZK_ETOOBIG);
    } else {
        CHECK(rf.ptr == NULL && rb.ptr == NULL);
        CHECK(ef == em || ef == ZK_ENOSPACE);
        CHECK(eb == em || eb == ZK_ETOOBIG);
    }
    zk_writer_free(&fw);
    free(fixed);
}

static void cleanup(void) {
    zk_doc_free(&doc_def);
    zk_doc_free(&doc_lim);
    zk_doc_free(&doc_again);
    zk_doc_free(&doc_json);
    zk_writer_free(&mp_out);
    zk_writer_free(&json_out);
    zk_writer_free(&grow_json);
    zk_writer_free(&grow_mp);
    zk_writer_free(&bounded_mp);
    free(ev_ref.e);
    free(ev_got.e);
    free(ev_json.e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    const uint8_t *sep = NULL;
    size_t n, i;
    char *def_buf = NULL;
    walk parsed;
    int ok;
    if (!ready) {
        zk_doc_init(&doc_def);
        zk_doc_init(&doc_lim);
        zk_doc_init(&doc_again);
        zk_doc_init(&doc_json);
        zk_writer_init(&mp_out, NULL, 0);
        zk_writer_init(&json_out, NULL, 0);
        zk_writer_init(&grow_json, NULL, 0);
        zk_writer_init(&grow_mp, NULL, 0);
        zk_writer_init(&bounded_mp, NULL, 0);
        CHECK(zk_writer_set_codec(&mp_out, ZK_CODEC_MSGPACK) == ZK_OK);
        CHECK(zk_writer_set_codec(&grow_mp, ZK_CODEC_MSGPACK) == ZK_OK);
        CHECK(zk_writer_set_codec(&bounded_mp, ZK_CODEC_MSGPACK) == ZK_OK);
        atexit(cleanup);
        ready = 1;
    }
    if (size == 0) return 0;
    alloc_cap = ((size_t)1 << 20) + 256 * size;
    for (i = 1; i + 1 < size; i++)
        if (data[i] == 0xC1 && data[i + 1] == 0xC1) {
            sep = data + i;
            break;
        }
    n = sep ? (size_t)(sep - (data + 1)) : size - 1;
    ok = read_msgpack(data + 1, n, data[0], &def_buf, &parsed);
    if (sep) write_commands(sep + 2, size - 1 - n - 2, ok, &parsed);
    free(def_buf);
    return 0;
}
