/* Unit tests for MessagePack in the payload layer: zk_msgpack_parse read
   through the zk_value accessors, the zk_writer in ZK_CODEC_MSGPACK,
   zk_write_value from one codec to the other, and interop with an
   independent implementation (Debian's python3-msgpack).

   Inputs are written as the MessagePack spec draws them, in hex
   ("92 01 a1 'x'"). Every decoder input of the tables is also read, with
   each of its prefixes, from a read-only buffer that ends at an unmapped
   page, so an over-read or a write to the input crashes. When
   python3-msgpack is missing (tools/deps.sh msgpack installs it), the
   interop tests print SKIPPED, except under CI=true, where that is a
   failure. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, mkstemp, popen under -std=c99 */
#include <stdlib.h>

/* The library's allocator: made to fail on demand, and watched for the
   largest single request. */
static int alloc_fails;
static size_t alloc_largest;
static void *test_malloc(size_t n) {
    if (n > alloc_largest) alloc_largest = n;
    return alloc_fails ? NULL : malloc(n);
}
static void *test_realloc(void *p, size_t n) {
    if (n > alloc_largest) alloc_largest = n;
    return alloc_fails ? NULL : realloc(p, n);
}
#define ZK_MALLOC(n) test_malloc(n)
#define ZK_REALLOC(p, n) test_realloc(p, n)
#define ZK_FREE(p) free(p)

#define ZOCKET_IMPLEMENTATION
#include "zocket.h"
#include "test.h"

#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <time.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- byte strings ---- */

typedef struct text {
    char *p;
    size_t len, cap;
} text;

static void text_add(text *t, const void *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->p = (char *)realloc(t->p, t->cap);
    }
    if (n) memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}
static void text_str(text *t, const char *s) { text_add(t, s, strlen(s)); }
static void text_byte(text *t, int c) {
    char b = (char)c;
    text_add(t, &b, 1);
}
static void text_rep(text *t, const char *s, size_t times) {
    size_t n = strlen(s);
    while (times--) text_add(t, s, n);
}
/* v as n big-endian bytes */
static void text_be(text *t, uint64_t v, int n) {
    while (n--) text_byte(t, (int)(v >> (8 * n) & 0xFF));
}
static void text_free(text *t) {
    free(t->p);
    t->p = NULL;
    t->len = t->cap = 0;
}

/* Appends "92 01 a1 'ab' 00*3": hex bytes, 'quoted ASCII', XX*N for N
   copies of a byte. */
static void hex_add(text *t, const char *h) {
    while (*h) {
        if (*h == ' ') {
            h++;
        } else if (*h == '\'') {
            const char *e = strchr(h + 1, '\'');
            if (!e) break;
            text_add(t, h + 1, (size_t)(e - h - 1));
            h = e + 1;
        } else if (isxdigit((unsigned char)h[0]) && isxdigit((unsigned char)h[1])) {
            char two[3] = {h[0], h[1], 0};
            int b = (int)strtol(two, NULL, 16);
            h += 2;
            if (*h == '*') {
                char *end;
                unsigned long k = strtoul(h + 1, &end, 10);
                h = end;
                while (k--) text_byte(t, b);
            } else {
                text_byte(t, b);
            }
        } else {
            break;
        }
    }
    if (*h) {
        printf("test bug: bad hex literal at \"%s\"\n", h);
        exit(2);
    }
    text_add(t, "", 0);
}
static text hex(const char *h) {
    text t = {0};
    hex_add(&t, h);
    return t;
}

/* Prints up to 48 bytes as hex. */
static void show(const void *s, size_t n) {
    size_t i;
    for (i = 0; i < n && i < 48; i++) printf("%s%02x", i ? " " : "", ((const unsigned char *)s)[i]);
    if (n > 48) printf(" ...(%zu bytes)", n);
}

/* ---- one document reused by most tests ---- */

/* The input is copied to a heap buffer of exactly its size (so ASan sees
   an over-read) that lives until the next parse. */
static zk_doc doc;
static char *doc_buf;

static int mp_n(const void *s, size_t n) {
    free(doc_buf);
    doc_buf = (char *)malloc(n ? n : 1);
    if (n) memcpy(doc_buf, s, n);
    return zk_msgpack_parse(&doc, doc_buf, n);
}
static int mp(const char *h) {
    text t = hex(h);
    int rc = mp_n(t.p, t.len);
    text_free(&t);
    return rc;
}
static zk_value root(void) { return zk_doc_root(&doc); }
static zk_value at_path(const char *p) { return zk_value_path(root(), p); }

static uint64_t double_bits(double d) {
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}
static double bits_double(uint64_t b) {
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}
static double float_bits(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return (double)f;
}

static int view_eq(zk_str a, zk_str b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* Deep equality: same types, ints equal, doubles with the same bits, same
   string or binary bytes, same elements / members (keys and order). */
static int same_value(zk_value a, zk_value b) {
    int t = zk_value_type(a);
    zk_value x, y;
    if (t != zk_value_type(b)) return 0;
    switch (t) {
    case ZK_TYPE_NONE:
    case ZK_TYPE_NULL: return 1;
    case ZK_TYPE_BOOL: return zk_value_bool(a, -1) == zk_value_bool(b, -1);
    case ZK_TYPE_INT: return zk_value_int(a, 0) == zk_value_int(b, 0);
    case ZK_TYPE_DOUBLE:
        return double_bits(zk_value_double(a, 0)) == double_bits(zk_value_double(b, 0));
    case ZK_TYPE_STRING:
    case ZK_TYPE_BINARY: return view_eq(zk_value_str(a), zk_value_str(b));
    case ZK_TYPE_ARRAY:
    case ZK_TYPE_OBJECT:
        if (zk_value_len(a) != zk_value_len(b)) return 0;
        for (x = zk_value_first(a), y = zk_value_first(b); zk_value_type(x) && zk_value_type(y);
             x = zk_value_next(x), y = zk_value_next(y)) {
            if (t == ZK_TYPE_OBJECT && !view_eq(zk_value_key(x), zk_value_key(y))) return 0;
            if (!same_value(x, y)) return 0;
        }
        return zk_value_type(x) == ZK_TYPE_NONE && zk_value_type(y) == ZK_TYPE_NONE;
    default: return 0;
    }
}

/* ---- an independent encoder: the smallest form of everything ---- */

static void ref_uint(text *t, uint64_t u) {
    if (u < 128) text_byte(t, (int)u);
    else if (u < 256) text_byte(t, 0xcc), text_be(t, u, 1);
    else if (u < 65536) text_byte(t, 0xcd), text_be(t, u, 2);
    else if (u < UINT64_C(4294967296)) text_byte(t, 0xce), text_be(t, u, 4);
    else text_byte(t, 0xcf), text_be(t, u, 8);
}
static void ref_int(text *t, int64_t v) {
    if (v >= 0) ref_uint(t, (uint64_t)v);
    else if (v >= -32) text_byte(t, (int)(v & 0xFF));
    else if (v >= -128) text_byte(t, 0xd0), text_be(t, (uint64_t)v, 1);
    else if (v >= -32768) text_byte(t, 0xd1), text_be(t, (uint64_t)v, 2);
    else if (v >= INT64_C(-2147483648)) text_byte(t, 0xd2), text_be(t, (uint64_t)v, 4);
    else text_byte(t, 0xd3), text_be(t, (uint64_t)v, 8);
}
static void ref_double(text *t, double d) {
    text_byte(t, 0xcb);
    text_be(t, double_bits(d), 8);
}
/* fix: the fix form's first byte (0 when there is none), then the tags of
   the 8-, 16- and 32-bit forms (0: none) */
static void ref_head(text *t, size_t n, int fix, int fix_max, int t8, int t16, int t32) {
    if (fix && n <= (size_t)fix_max) text_byte(t, fix | (int)n);
    else if (t8 && n < 256) text_byte(t, t8), text_be(t, n, 1);
    else if (n < 65536) text_byte(t, t16), text_be(t, n, 2);
    else text_byte(t, t32), text_be(t, n, 4);
}
static void ref_str(text *t, const void *s, size_t n) {
    ref_head(t, n, 0xa0, 31, 0xd9, 0xda, 0xdb);
    text_add(t, s, n);
}
static void ref_bin(text *t, const void *s, size_t n) {
    ref_head(t, n, 0, 0, 0xc4, 0xc5, 0xc6);
    text_add(t, s, n);
}
static void ref_array(text *t, size_t n) { ref_head(t, n, 0x90, 15, 0, 0xdc, 0xdd); }
static void ref_map(text *t, size_t n) { ref_head(t, n, 0x80, 15, 0, 0xde, 0xdf); }

static void ref_encode(text *t, zk_value v) {
    zk_value e;
    zk_str s;
    switch (zk_value_type(v)) {
    case ZK_TYPE_NULL: text_byte(t, 0xc0); break;
    case ZK_TYPE_BOOL: text_byte(t, zk_value_bool(v, 0) ? 0xc3 : 0xc2); break;
    case ZK_TYPE_INT: ref_int(t, zk_value_int(v, 0)); break;
    case ZK_TYPE_DOUBLE: ref_double(t, zk_value_double(v, 0)); break;
    case ZK_TYPE_STRING: s = zk_value_str(v); ref_str(t, s.ptr, s.len); break;
    case ZK_TYPE_BINARY: s = zk_value_str(v); ref_bin(t, s.ptr, s.len); break;
    case ZK_TYPE_ARRAY:
        ref_array(t, zk_value_len(v));
        for (e = zk_value_first(v); zk_value_type(e); e = zk_value_next(e)) ref_encode(t, e);
        break;
    case ZK_TYPE_OBJECT:
        ref_map(t, zk_value_len(v));
        for (e = zk_value_first(v); zk_value_type(e); e = zk_value_next(e)) {
            s = zk_value_key(e);
            ref_str(t, s.ptr, s.len);
            ref_encode(t, e);
        }
        break;
    default: text_str(t, "<none>"); break;
    }
}

/* RFC 4648 base64 with padding, independent of the library's */
static void ref_base64(text *t, const unsigned char *p, size_t n) {
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        char q[4] = {a[v >> 18], a[v >> 12 & 63], a[v >> 6 & 63], a[v & 63]};
        text_add(t, q, 4);
    }
    if (n - i == 1) {
        char q[4] = {a[p[i] >> 2], a[(p[i] & 3) << 4], '=', '='};
        text_add(t, q, 4);
    } else if (n - i == 2) {
        char q[4] = {a[p[i] >> 2], a[(p[i] & 3) << 4 | p[i + 1] >> 4], a[(p[i + 1] & 15) << 2], '='};
        text_add(t, q, 4);
    }
}

/* ---- the decoder's invalid-input tables (also run against the guard page) ---- */

/* An input, and where error_at may point: from lo (the start of the
   offending item) to hi (its end; -1: the input's length). */
typedef struct bad_case {
    const char *hex;
    int lo, hi;
} bad_case;

static const bad_case bad_reserved[] = { /* 0xc1, never used */
    {"c1", 0, 0},
    {"91 c1", 1, 1},
    {"92 01 c1", 2, 2},
    {"81 a1 'a' c1", 3, 3},
    {"81 c1 01", 1, 1},
    {"dc 00 01 c1", 3, 3},
};

static const bad_case bad_ext[] = { /* every ext family, whole and well formed */
    {"d4 01 00", 0, 2},
    {"d5 01 00 00", 0, 3},
    {"d6 ff 00 00 00 00", 0, 5},          /* timestamp 32 */
    {"d7 ff 00*8", 0, 9},                 /* timestamp 64 */
    {"d8 01 00*16", 0, 17},
    {"c7 00 05", 0, 2},
    {"c7 01 05 00", 0, 3},
    {"c7 0c ff 00*12", 0, 14},            /* timestamp 96 */
    {"c8 00 01 05 00", 0, 4},
    {"c9 00 00 00 01 05 00", 0, 6},
    {"91 d4 01 00", 1, 3},
    {"81 a1 'k' d4 01 00", 3, 5},
    {"81 d4 01 00 01", 1, 3},             /* as a key */
    {"92 01 c7 00 05", 2, 4},
};

static const bad_case bad_nonfinite[] = {
    {"ca 7f c0 00 00", 0, 4}, /* NaN */
    {"ca ff c0 00 00", 0, 4},
    {"ca 7f 80 00 01", 0, 4}, /* signalling NaN */
    {"ca ff ff ff ff", 0, 4},
    {"ca 7f 80 00 00", 0, 4}, /* +inf */
    {"ca ff 80 00 00", 0, 4}, /* -inf */
    {"cb 7f f8 00*6", 0, 8},
    {"cb 7f f0 00*5 01", 0, 8},
    {"cb ff ff ff ff ff ff ff ff", 0, 8},
    {"cb 7f f0 00*6", 0, 8},
    {"cb ff f0 00*6", 0, 8},
    {"92 01 cb 7f f0 00*6", 2, 10},
    {"81 a1 'd' ca 7f c0 00 00", 3, 7},
};

static const bad_case bad_keys[] = { /* map keys must be strings */
    {"81 c0 01", 1, 1},
    {"81 c2 01", 1, 1},
    {"81 c3 01", 1, 1},
    {"81 01 01", 1, 1},
    {"81 ff 01", 1, 1},
    {"81 cc 80 01", 1, 2},
    {"81 d3 00*8 01", 1, 9},
    {"81 ca 3f 80 00 00 01", 1, 5},
    {"81 cb 3f f0 00*6 01", 1, 9},
    {"81 c4 01 'a' 01", 1, 3},           /* bin, even when its bytes are UTF-8 */
    {"81 c4 00 01", 1, 2},
    {"81 90 01", 1, 1},
    {"81 80 01", 1, 1},
    {"82 a1 'a' 01 02 01", 4, 4},        /* the second key */
    {"de 00 01 01 01", 3, 3},
    {"df 00 00 00 01 c0 c0", 5, 5},
    {"91 81 01 01", 2, 2},
    {"81 a1 'k' 81 91 a0 00", 4, 4},
};

static const bad_case bad_utf8[] = { /* str that is not UTF-8 */
    {"a2 c0 80", 0, -1},      /* overlong NUL */
    {"a2 c1 bf", 0, -1},
    {"a3 e0 80 80", 0, -1},
    {"a3 e0 9f bf", 0, -1},
    {"a4 f0 80 80 80", 0, -1},
    {"a4 f0 8f bf bf", 0, -1},
    {"a3 ed a0 80", 0, -1},   /* U+D800 */
    {"a3 ed bf bf", 0, -1},   /* U+DFFF */
    {"a6 ed a0 bd ed b8 80", 0, -1}, /* CESU-8 pair */
    {"a2 e2 82", 0, -1},      /* a sequence cut by the end of the string */
    {"a3 f0 9f 98", 0, -1},
    {"a1 c3", 0, -1},
    {"a3 'a' c3 'b'", 0, -1},
    {"a2 c3 28", 0, -1},
    {"a1 80", 0, -1},
    {"a1 bf", 0, -1},
    {"a4 f4 90 80 80", 0, -1}, /* above U+10FFFF */
    {"a4 f5 80 80 80", 0, -1},
    {"a5 f8 88 80 80 80", 0, -1},
    {"a1 fe", 0, -1},
    {"a1 ff", 0, -1},
    {"d9 02 c3 28", 0, -1},
    {"da 00 01 ff", 0, -1},
    {"db 00 00 00 01 ff", 0, -1},
    {"92 a1 c3 a1 a9", 1, -1}, /* a character split across two strings */
    {"81 a1 ff 01", 1, 3},     /* as a key */
    {"81 a1 'k' a1 ff", 3, -1},
};

static const bad_case bad_truncated[] = { /* a header promising more than there is */
    {"cc", 0, -1}, {"cd 01", 0, -1}, {"ce 01 02 03", 0, -1}, {"cf 00*7", 0, -1},
    {"d0", 0, -1}, {"d1 01", 0, -1}, {"d2 01 02 03", 0, -1}, {"d3 00*7", 0, -1},
    {"ca 00 00 00", 0, -1}, {"cb 00*7", 0, -1},
    {"a1", 0, -1}, {"a5 'abcd'", 0, -1}, {"bf 'a'", 0, -1},
    {"d9", 0, -1}, {"d9 05 'abcd'", 0, -1}, {"da 00", 0, -1}, {"da 00 05 'abcd'", 0, -1},
    {"db 00 00 00", 0, -1}, {"db 00 00 00 05 'abcd'", 0, -1},
    {"c4", 0, -1}, {"c4 05 'abcd'", 0, -1}, {"c5 00", 0, -1}, {"c5 00 05 'abcd'", 0, -1},
    {"c6 00 00 00", 0, -1}, {"c6 00 00 00 05 'abcd'", 0, -1},
    {"91", 0, -1}, {"92 01", 0, -1}, {"9f 01*14", 0, -1}, {"dc 00", 0, -1},
    {"dc 00 02 01", 0, -1}, {"dd 00 00 00", 0, -1}, {"dd 00 00 00 02 01", 0, -1},
    {"81", 0, -1}, {"81 a1 'a'", 0, -1}, {"82 a1 'a' 01 a1 'b'", 0, -1},
    {"8f a1 'a' 01", 0, -1}, {"de 00", 0, -1}, {"de 00 01 a1 'a'", 0, -1},
    {"df 00 00 00", 0, -1}, {"df 00 00 00 01 a1 'a'", 0, -1},
    {"91 91 91", 0, -1}, {"81 a1 'a' 81 a1 'b'", 0, -1}, {"93 01 92 02", 0, -1},
    {"d4 01", 0, -1}, {"c7 05 01 'ab'", 0, -1},
};

static const bad_case bad_trailing[] = { /* data after the value */
    {"c0 c0", 1, 1},
    {"c3 00", 1, 1},
    {"90 00", 1, 1},
    {"80 80", 1, 1},
    {"a1 'a' 'a'", 2, 2},
    {"91 01 01", 2, 2},
    {"cc 01 00", 2, 2},
    {"c4 00 00", 2, 2},
    {"cb 00*8 00", 9, 9},
    {"01 c1", 1, 1},
    {"00 ff", 1, 1},
    {"dc 00 01 90 90", 4, 4},
};

/* Declared lengths and counts far past the end of the input. */
static const bad_case bad_huge[] = {
    {"db ff ff ff ff 'abc'", 0, -1},     /* str32, 4 GiB */
    {"db 80 00 00 00", 0, -1},
    {"c6 ff ff ff ff 'abc'", 0, -1},     /* bin32, 4 GiB */
    {"dd ff ff ff ff 01 02", 0, -1},     /* array32 */
    {"df ff ff ff ff a1 'a' 01", 0, -1}, /* map32 */
    {"dc ff ff 01", 0, -1},
    {"de ff ff", 0, -1},
    {"da ff ff 'ab'", 0, -1},
    {"c5 ff ff", 0, -1},
    {"d9 ff 'abc'", 0, -1},
    {"c4 ff", 0, -1},
    {"9f 01", 0, -1},
    {"8f a1 'a' 01", 0, -1},
    {"91 dd ff ff ff ff", 0, -1},
    {"81 a1 'k' db 80 00 00 00", 0, -1},
    {"81 db ff ff ff ff", 0, -1},
    {"92 c6 ff ff ff fe 00", 0, -1},
    {"c9 ff ff ff ff 01", 0, -1},        /* ext32: refused either way */
    {"dd 00 00 00 02 dd ff ff ff ff", 0, -1},
};

static const bad_case bad_empty[] = {
    {"", 0, 0},
};

typedef struct bad_table {
    const char *name;
    const bad_case *cases;
    size_t count;
} bad_table;
#define TABLE(t) { #t, t, COUNT(t) }
static const bad_table bad_tables[] = {
    TABLE(bad_reserved), TABLE(bad_ext),       TABLE(bad_nonfinite), TABLE(bad_keys),
    TABLE(bad_utf8),     TABLE(bad_truncated), TABLE(bad_trailing),  TABLE(bad_huge),
    TABLE(bad_empty),
};

/* Parses c and checks ZK_EPARSE, the error text and error_at's range, and
   that the root is NONE. */
static void check_bad(const bad_case *c) {
    int before = test__failed_checks;
    text in = hex(c->hex);
    size_t hi = c->hi < 0 ? in.len : (size_t)c->hi;
    int rc = mp_n(in.p, in.len);
    CHECK_EQ_INT(rc, ZK_EPARSE);
    CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_NONE);
    if (rc == ZK_EPARSE) {
        CHECK(doc.error != NULL && doc.error[0] != '\0');
        CHECK(doc.error_at >= (size_t)c->lo && doc.error_at <= hi);
    }
    if (test__failed_checks != before)
        printf("    input %s: rc %s, error_at %zu (%s); expected ZK_EPARSE at %d..%zu\n", c->hex,
               zk_err_name(rc), doc.error_at, doc.error ? doc.error : "no text", c->lo, hi);
    text_free(&in);
}

static void check_bad_table(const bad_case *cases, size_t count) {
    size_t i;
    for (i = 0; i < count; i++) check_bad(&cases[i]);
}

/* ---- valid inputs (also run against the guard page) ---- */

static const char *const good_docs[] = {
    "c0", "c2", "c3", "00", "7f", "e0", "ff",
    "cc 00", "cc ff", "cd ff ff", "ce ff ff ff ff", "cf ff*8", "cf 7f ff*7",
    "d0 80", "d1 80 00", "d2 80 00 00 00", "d3 80 00*7", "d3 7f ff*7",
    "ca 3f c0 00 00", "ca 00 00 00 01", "cb 3f f8 00*6", "cb 80 00*7",
    "a0", "a3 'abc'", "bf 78*31", "d9 00", "d9 03 'abc'", "da 00 03 'abc'", "db 00 00 00 03 'abc'",
    "a4 f0 9f 98 80", "a3 'a' 00 'b'", "a2 c3 a9",
    "c4 00", "c4 02 00 ff", "c5 00 02 00 ff", "c6 00 00 00 02 00 ff",
    "90", "93 01 02 03", "9f 00*15", "dc 00 00", "dc 00 02 c0 c3", "dd 00 00 00 00",
    "dd 00 00 00 01 90",
    "80", "81 a1 'a' 01", "81 a0 c0", "de 00 01 a0 c0", "df 00 00 00 01 a1 'k' 80",
    "81 d9 01 'k' 01", "81 da 00 01 'k' 01", "81 db 00 00 00 01 'k' 01",
    "82 a1 'a' 01 a1 'a' 02",
    ("84 a4 'user' 84 a4 'name' a3 'ann' a4 'tags' 93 a1 'a' a1 'b' 90 a6 'avatar' c4 03 00 01 ff"
     " a3 'age' 29 a5 'items' 92 81 a2 'id' 01 82 a2 'id' 02 a1 'x' c0 a0 80 a3 'big' cf ff*8"),
    "91 91 91 91 91 91 91 91 91 91 01",
    "81 a1 'a' 81 a1 'a' 81 a1 'a' 81 a1 'a' c0",
    "96 c0 c2 c3 ca 3f 80 00 00 a0 c4 00",
};

/* =========================== decoding ============================ */

TEST(decode_nil_and_bool) {
    CHECK_EQ_INT(mp("c0"), ZK_OK);
    CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_NULL);
    CHECK_EQ_INT(zk_value_int(root(), 7), 7);
    CHECK_EQ_INT(zk_value_bool(root(), 7), 7);
    CHECK_EQ_INT(mp("c2"), ZK_OK);
    CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_BOOL);
    CHECK_EQ_INT(zk_value_bool(root(), 7), 0);
    CHECK_EQ_INT(mp("c3"), ZK_OK);
    CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_BOOL);
    CHECK_EQ_INT(zk_value_bool(root(), 7), 1);
    CHECK_EQ_INT(zk_value_int(root(), 7), 7); /* true is no int */
    CHECK(zk_value_str(root()).ptr == NULL);
}

TEST(decode_every_fixint) {
    int c;
    for (c = 0; c < 256; c++) {
        unsigned char b = (unsigned char)c;
        int rc;
        if (c >= 0x80 && c < 0xe0) continue;
        rc = mp_n(&b, 1);
        CHECK_EQ_INT(rc, ZK_OK);
        CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_INT);
        CHECK_EQ_INT(zk_value_int(root(), 999), c < 0x80 ? c : c - 256);
        CHECK(zk_value_double(root(), 999) == (double)(c < 0x80 ? c : c - 256));
        if (rc != ZK_OK) printf("    byte %02x\n", c);
    }
}

typedef struct num_case {
    const char *hex;
    int type;
    int64_t i;
    double d;
} num_case;
#define NI(h, v) { h, ZK_TYPE_INT, v, 0 }
#define ND(h, v) { h, ZK_TYPE_DOUBLE, 0, v }

static void check_numbers(const num_case *nums, size_t count) {
    size_t i;
    for (i = 0; i < count; i++) {
        int before = test__failed_checks;
        int rc = mp(nums[i].hex);
        CHECK_EQ_INT(rc, ZK_OK);
        CHECK_EQ_INT(zk_value_type(root()), nums[i].type);
        if (nums[i].type == ZK_TYPE_INT) {
            CHECK_EQ_INT(zk_value_int(root(), 99), nums[i].i);
            CHECK(zk_value_double(root(), 99) == (double)nums[i].i);
        } else {
            CHECK(double_bits(zk_value_double(root(), 99)) == double_bits(nums[i].d));
        }
        if (test__failed_checks != before)
            printf("    input %s: rc %s type %s int %lld double %.17g\n", nums[i].hex,
                   zk_err_name(rc), zk_type_name(zk_value_type(root())),
                   (long long)zk_value_int(root(), 0), zk_value_double(root(), 0));
    }
}

TEST(decode_integers_at_their_edges) {
    static const num_case nums[] = {
        NI("cc 00", 0), NI("cc 01", 1), NI("cc 7f", 127), NI("cc 80", 128), NI("cc ff", 255),
        NI("cd 00 00", 0), NI("cd 00 ff", 255), NI("cd 01 00", 256), NI("cd 7f ff", 32767),
        NI("cd 80 00", 32768), NI("cd ff ff", 65535),
        NI("ce 00 00 00 00", 0), NI("ce 00 00 ff ff", 65535), NI("ce 00 01 00 00", 65536),
        NI("ce 7f ff ff ff", INT64_C(2147483647)), NI("ce 80 00 00 00", INT64_C(2147483648)),
        NI("ce ff ff ff ff", INT64_C(4294967295)),
        NI("cf 00*8", 0), NI("cf 00 00 00 00 ff ff ff ff", INT64_C(4294967295)),
        NI("cf 00 00 00 01 00 00 00 00", INT64_C(4294967296)),
        NI("cf 7f ff*7", INT64_MAX), NI("cf 7f ff ff ff ff ff ff fe", INT64_MAX - 1),
        /* above INT64_MAX: a double, as a JSON integer that large is */
        ND("cf 80 00*7", 9223372036854775808.0),
        ND("cf 80 00*6 01", 9223372036854775808.0),
        ND("cf 80 00 00 00 00 00 04 01", 9223372036854777856.0), /* 2^63 + 1025 rounds up */
        ND("cf 80 00 00 00 00 00 04 00", 9223372036854775808.0), /* 2^63 + 1024: to even */
        ND("cf ff*8", 18446744073709551616.0),
        ND("cf ff ff ff ff ff ff fb ff", 18446744073709549568.0),
        NI("d0 00", 0), NI("d0 01", 1), NI("d0 7f", 127), NI("d0 80", -128), NI("d0 ff", -1),
        NI("d0 e0", -32), NI("d0 df", -33), NI("d0 81", -127),
        NI("d1 00 00", 0), NI("d1 7f ff", 32767), NI("d1 80 00", -32768), NI("d1 ff 7f", -129),
        NI("d1 ff 80", -128), NI("d1 ff ff", -1),
        NI("d2 00 00 00 00", 0), NI("d2 7f ff ff ff", INT64_C(2147483647)),
        NI("d2 80 00 00 00", INT64_C(-2147483648)), NI("d2 ff ff 7f ff", -32769),
        NI("d2 ff ff ff ff", -1),
        NI("d3 00*8", 0), NI("d3 7f ff*7", INT64_MAX), NI("d3 80 00*7", INT64_MIN),
        NI("d3 80 00*6 01", INT64_MIN + 1), NI("d3 ff*8", -1),
        NI("d3 ff ff ff ff 7f ff ff ff", INT64_C(-2147483649)),
        NI("d3 00 00 00 01 00 00 00 00", INT64_C(4294967296)),
    };
    check_numbers(nums, COUNT(nums));
}

TEST(decode_floats) {
    static const struct {
        const char *hex;
        uint32_t bits;
    } f32[] = {
        {"ca 00 00 00 00", 0}, {"ca 80 00 00 00", 0x80000000u}, {"ca 3f c0 00 00", 0x3fc00000u},
        {"ca 3d cc cc cd", 0x3dcccccdu}, /* 0.1f */
        {"ca 7f 7f ff ff", 0x7f7fffffu}, /* FLT_MAX */
        {"ca ff 7f ff ff", 0xff7fffffu}, {"ca 00 80 00 00", 0x00800000u}, /* FLT_MIN */
        {"ca 00 00 00 01", 1u},          /* the smallest subnormal */
        {"ca 80 7f ff ff", 0x807fffffu}, {"ca 4b 80 00 00", 0x4b800000u}, /* 2^24 */
        {"ca c2 f6 e9 79", 0xc2f6e979u},
    };
    static const num_case f64[] = {
        ND("cb 00*8", 0.0), ND("cb 3f f0 00*6", 1.0), ND("cb bf f8 00*6", -1.5),
        ND("cb 3f b9 99 99 99 99 99 9a", 0.1), ND("cb 7f ef ff*6", DBL_MAX),
        ND("cb ff ef ff*6", -DBL_MAX), ND("cb 00 10 00*6", DBL_MIN),
        ND("cb 00*7 01", 4.9406564584124654e-324), ND("cb 80 00*6 01", -4.9406564584124654e-324),
        ND("cb 43 e0 00*6", 9223372036854775808.0), ND("cb c3 e0 00*6", -9223372036854775808.0),
        ND("cb 44 b5 2d 02 c7 e1 4a f6", 1e23),
    };
    size_t i;
    CHECK_EQ_INT(mp("cb 80 00*7"), ZK_OK); /* -0.0 keeps its sign */
    CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_DOUBLE);
    CHECK(double_bits(zk_value_double(root(), 1)) == UINT64_C(0x8000000000000000));
    for (i = 0; i < COUNT(f32); i++) {
        int rc = mp(f32[i].hex);
        double want = float_bits(f32[i].bits);
        CHECK_EQ_INT(rc, ZK_OK);
        CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_DOUBLE);
        CHECK(double_bits(zk_value_double(root(), 99)) == double_bits(want));
        if (rc != ZK_OK || double_bits(zk_value_double(root(), 99)) != double_bits(want))
            printf("    input %s: %.17g, expected %.17g\n", f32[i].hex, zk_value_double(root(), 99),
                   want);
    }
    check_numbers(f64, COUNT(f64));
    /* a float is a double, an int only when integral and in range */
    CHECK_EQ_INT(mp("cb 3f f0 00*6"), ZK_OK);
    CHECK_EQ_INT(zk_value_int(root(), 9), 1);
    CHECK_EQ_INT(mp("ca 4b 80 00 00"), ZK_OK);
    CHECK_EQ_INT(zk_value_int(root(), 9), 16777216);
    CHECK_EQ_INT(mp("ca 3f c0 00 00"), ZK_OK);
    CHECK_EQ_INT(zk_value_int(root(), 9), 9);
    CHECK_EQ_INT(mp("cb 43 e0 00*6"), ZK_OK);
    CHECK_EQ_INT(zk_value_int(root(), 9), 9);
    CHECK_EQ_INT(mp("cb c3 e0 00*6"), ZK_OK);
    CHECK_EQ_INT(zk_value_int(root(), 9), INT64_MIN);
}

/* header hex for a str, bin, array or map of n */
static void header(text *t, int kind, size_t n, int form) {
    /* form 0: fix, 1: 8-bit, 2: 16-bit, 3: 32-bit */
    static const int tags[4][4] = {
        {0xa0, 0xd9, 0xda, 0xdb}, /* str */
        {0, 0xc4, 0xc5, 0xc6},    /* bin */
        {0x90, 0, 0xdc, 0xdd},    /* array */
        {0x80, 0, 0xde, 0xdf},    /* map */
    };
    if (form == 0) text_byte(t, tags[kind][0] | (int)n);
    else text_byte(t, tags[kind][form]), text_be(t, n, form == 1 ? 1 : form == 2 ? 2 : 4);
}
enum { STR, BIN, ARR, MAP };

TEST(decode_strings_every_length_form) {
    static const struct {
        int form;
        size_t n;
    } cases[] = {
        {0, 0}, {0, 1}, {0, 5}, {0, 31}, {1, 0}, {1, 1}, {1, 31}, {1, 32}, {1, 255},
        {2, 0}, {2, 1}, {2, 255}, {2, 256}, {2, 65535}, {3, 0}, {3, 1}, {3, 65535},
        {3, 65536}, {3, 100000},
    };
    size_t k, i;
    for (k = 0; k < COUNT(cases); k++) {
        text in = {0};
        zk_str s;
        int rc;
        header(&in, STR, cases[k].n, cases[k].form);
        for (i = 0; i < cases[k].n; i++) text_byte(&in, 'a' + (int)(i % 26));
        rc = mp_n(in.p, in.len);
        CHECK_EQ_INT(rc, ZK_OK);
        CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_STRING);
        CHECK_EQ_INT(zk_value_len(root()), cases[k].n);
        s = zk_value_str(root());
        CHECK_MEM(s.ptr, s.len, in.p + in.len - cases[k].n, cases[k].n);
        /* zero-copy: a view into the buffer parsed */
        CHECK(s.ptr >= doc_buf && s.ptr + s.len <= doc_buf + in.len);
        if (rc != ZK_OK) printf("    form %d, %zu bytes: %s\n", cases[k].form, cases[k].n, doc.error);
        text_free(&in);
    }
    /* content: every UTF-8 length at its boundaries, NUL, DEL, U+2028 */
    CHECK_EQ_INT(mp("a4 f0 9f 98 80"), ZK_OK);
    CHECK_STR(zk_value_str(root()), "\xF0\x9F\x98\x80");
    CHECK_EQ_INT(mp("a3 'a' 00 'b'"), ZK_OK);
    CHECK_MEM(zk_value_str(root()).ptr, zk_value_str(root()).len, "a\0b", 3);
    CHECK_EQ_INT(zk_value_len(root()), 3);
    CHECK_EQ_INT(mp("b3 7f c2 80 df bf e0 a0 80 ef bf bf f0 90 80 80 f4 8f bf bf"), ZK_OK);
    CHECK_STR(zk_value_str(root()),
              "\x7F\xC2\x80\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBF\xF0\x90\x80\x80\xF4\x8F\xBF\xBF");
    CHECK_EQ_INT(mp("a6 e2 80 a8 ed 9f bf"), ZK_OK);
    CHECK_EQ_INT(mp("a1 00"), ZK_OK);
    CHECK_EQ_INT(zk_value_len(root()), 1);
    /* a string is no number, no bool */
    CHECK_EQ_INT(mp("a1 '3'"), ZK_OK);
    CHECK_EQ_INT(zk_value_int(root(), 9), 9);
    CHECK_EQ_INT(zk_value_bool(root(), 9), 9);
}

TEST(decode_binary_every_length_form) {
    static const struct {
        int form;
        size_t n;
    } cases[] = {
        {1, 0}, {1, 1}, {1, 255}, {2, 0}, {2, 256}, {2, 65535}, {3, 0}, {3, 65536}, {3, 70000},
    };
    size_t k, i;
    for (k = 0; k < COUNT(cases); k++) {
        text in = {0};
        zk_str s;
        int rc;
        header(&in, BIN, cases[k].n, cases[k].form);
        for (i = 0; i < cases[k].n; i++) text_byte(&in, (int)((i * 7 + 0x80) & 0xFF));
        rc = mp_n(in.p, in.len);
        CHECK_EQ_INT(rc, ZK_OK);
        CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_BINARY);
        s = zk_value_str(root());
        CHECK_EQ_INT(s.len, cases[k].n);
        if (cases[k].n) {
            CHECK_MEM(s.ptr, s.len, in.p + in.len - cases[k].n, cases[k].n);
            CHECK(s.ptr >= doc_buf && s.ptr + s.len <= doc_buf + in.len);
        }
        /* len: its bytes, like a string's */
        CHECK_EQ_INT(zk_value_len(root()), cases[k].n);
        text_free(&in);
    }
    CHECK_EQ_INT(mp("c4 03 00 ff 80"), ZK_OK);
    CHECK(strcmp(zk_type_name(zk_value_type(root())), "binary") == 0);
    CHECK_MEM(zk_value_str(root()).ptr, zk_value_str(root()).len, "\0\xff\x80", 3);
    CHECK_EQ_INT(zk_value_int(root(), 9), 9);
    CHECK(zk_value_double(root(), 2.5) == 2.5);
    CHECK_EQ_INT(zk_value_bool(root(), 9), 9);
    CHECK_EQ_INT(zk_value_type(zk_value_first(root())), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(zk_value_at(root(), 0)), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(zk_value_get(root(), "a")), ZK_TYPE_NONE);
    /* bytes that are valid UTF-8 are still binary */
    CHECK_EQ_INT(mp("c4 02 'hi'"), ZK_OK);
    CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_BINARY);
}

/* a doc for more than the default node limit */
static int mp_big(zk_doc *d, const text *in) {
    d->max_nodes = 1u << 20;
    return zk_msgpack_parse(d, in->p, in->len);
}

TEST(decode_arrays_every_length_form) {
    static const struct {
        int form;
        size_t n;
    } cases[] = {
        {0, 0}, {0, 1}, {0, 15}, {2, 0}, {2, 1}, {2, 16}, {2, 65535}, {3, 0}, {3, 1}, {3, 65536},
        {3, 100000},
    };
    size_t k, i;
    zk_doc d = {0};
    for (k = 0; k < COUNT(cases); k++) {
        text in = {0};
        zk_value r, e;
        size_t n = cases[k].n, count = 0;
        int rc, ok = 1;
        header(&in, ARR, n, cases[k].form);
        for (i = 0; i < n; i++) text_byte(&in, (int)(i % 128));
        rc = mp_big(&d, &in);
        CHECK_EQ_INT(rc, ZK_OK);
        r = zk_doc_root(&d);
        CHECK_EQ_INT(zk_value_type(r), ZK_TYPE_ARRAY);
        CHECK_EQ_INT(zk_value_len(r), n);
        for (e = zk_value_first(r); zk_value_type(e); e = zk_value_next(e), count++)
            if (zk_value_int(e, -1) != (int64_t)(count % 128)) ok = 0;
        CHECK(ok);
        CHECK_EQ_INT(count, n);
        if (n) {
            CHECK_EQ_INT(zk_value_int(zk_value_at(r, 0), -1), 0);
            if (n < 1000) CHECK_EQ_INT(zk_value_int(zk_value_at(r, n - 1), -1), (n - 1) % 128);
        }
        if (n < 1000) CHECK_EQ_INT(zk_value_type(zk_value_at(r, n)), ZK_TYPE_NONE);
        if (rc != ZK_OK) printf("    form %d, %zu elements: %s\n", cases[k].form, n, d.error);
        text_free(&in);
    }
    /* the default limit: an array and 65535 elements are 65536 values */
    {
        text in = hex("dc ff ff 00*65535");
        CHECK_EQ_INT(mp_n(in.p, in.len), ZK_OK);
        CHECK_EQ_INT(zk_value_len(root()), 65535);
        text_free(&in);
    }
    zk_doc_free(&d);
}

TEST(decode_maps_every_length_form) {
    static const struct {
        int form;
        size_t n;
    } cases[] = {
        {0, 0}, {0, 1}, {0, 15}, {2, 0}, {2, 16}, {2, 65535}, {3, 0}, {3, 1}, {3, 65536},
    };
    size_t k, i;
    zk_doc d = {0};
    for (k = 0; k < COUNT(cases); k++) {
        text in = {0};
        zk_value r, e;
        size_t n = cases[k].n, count = 0;
        char key[32];
        int rc, ok = 1;
        header(&in, MAP, n, cases[k].form);
        for (i = 0; i < n; i++) {
            int kl = snprintf(key, sizeof key, "k%zu", i);
            text_byte(&in, 0xa0 | kl);
            text_add(&in, key, (size_t)kl);
            ref_int(&in, (int64_t)i - 40000);
        }
        rc = mp_big(&d, &in);
        CHECK_EQ_INT(rc, ZK_OK);
        r = zk_doc_root(&d);
        CHECK_EQ_INT(zk_value_type(r), ZK_TYPE_OBJECT);
        CHECK_EQ_INT(zk_value_len(r), n);
        for (e = zk_value_first(r); zk_value_type(e); e = zk_value_next(e), count++) {
            int kl = snprintf(key, sizeof key, "k%zu", count);
            if (!view_eq(zk_value_key(e), zk_str_c(key)) || kl <= 0) ok = 0;
            if (zk_value_int(e, 1) != (int64_t)count - 40000) ok = 0;
        }
        CHECK(ok);
        CHECK_EQ_INT(count, n);
        if (n && n < 1000) {
            snprintf(key, sizeof key, "k%zu", n - 1);
            CHECK_EQ_INT(zk_value_int(zk_value_get(r, key), 1), (int64_t)(n - 1) - 40000);
            CHECK_EQ_INT(zk_value_int(zk_value_get(r, "k0"), 1), -40000);
        }
        CHECK_EQ_INT(zk_value_type(zk_value_get(r, "nope")), ZK_TYPE_NONE);
        if (rc != ZK_OK) printf("    form %d, %zu members: %s\n", cases[k].form, n, d.error);
        text_free(&in);
    }
    zk_doc_free(&d);
    /* keys in each str form, empty, with NUL; duplicates: the first wins */
    CHECK_EQ_INT(mp("86 a1 'a' 01 d9 02 'bb' 02 da 00 01 'c' 03 db 00 00 00 01 'd' 04 a0 05"
                    " a3 'k' 00 'y' 06"),
                 ZK_OK);
    CHECK_EQ_INT(zk_value_int(zk_value_get(root(), "a"), 0), 1);
    CHECK_EQ_INT(zk_value_int(zk_value_get(root(), "bb"), 0), 2);
    CHECK_EQ_INT(zk_value_int(zk_value_get(root(), "c"), 0), 3);
    CHECK_EQ_INT(zk_value_int(zk_value_get(root(), "d"), 0), 4);
    CHECK_EQ_INT(zk_value_int(zk_value_get(root(), ""), 0), 5);
    CHECK_EQ_INT(zk_value_int(zk_value_get_n(root(), "k\0y", 3), 0), 6);
    CHECK_EQ_INT(zk_value_type(zk_value_get(root(), "k")), ZK_TYPE_NONE);
    CHECK_EQ_INT(mp("83 a1 'a' 01 a1 'b' 02 a1 'a' 03"), ZK_OK);
    CHECK_EQ_INT(zk_value_len(root()), 3);
    CHECK_EQ_INT(zk_value_int(zk_value_get(root(), "a"), 0), 1);
}

static const char nested_doc[] =
    "84 a4 'user' 84 a4 'name' a3 'ann' a4 'tags' 93 a1 'a' a1 'b' 90 a6 'avatar' c4 03 00 01 ff"
    " a3 'age' 29 a5 'items' 92 81 a2 'id' 01 82 a2 'id' 02 a1 'x' c0 a0 80 a3 'big' cf ff*8";

TEST(decode_nested_with_paths_get_at) {
    static const char *const keys[] = {"user", "items", "", "big"};
    static const int types[] = {ZK_TYPE_OBJECT, ZK_TYPE_ARRAY, ZK_TYPE_OBJECT, ZK_TYPE_DOUBLE};
    zk_value e, items;
    zk_str s;
    int n = 0;
    CHECK_EQ_INT(mp(nested_doc), ZK_OK);
    CHECK_EQ_INT(zk_value_len(root()), 4);
    CHECK_STR(zk_value_str(at_path("user.name")), "ann");
    CHECK_STR(zk_value_str(at_path("user.tags[1]")), "b");
    CHECK_EQ_INT(zk_value_type(at_path("user.tags[2]")), ZK_TYPE_ARRAY);
    CHECK_EQ_INT(zk_value_len(at_path("user.tags[2]")), 0);
    CHECK_EQ_INT(zk_value_type(at_path("user.tags[3]")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("user.avatar")), ZK_TYPE_BINARY);
    s = zk_value_str(at_path("user.avatar"));
    CHECK_MEM(s.ptr, s.len, "\0\1\xff", 3);
    CHECK_EQ_INT(zk_value_int(at_path("user.age"), 0), 41);
    CHECK_EQ_INT(zk_value_int(at_path("items[0].id"), 0), 1);
    CHECK_EQ_INT(zk_value_int(at_path("items[1].id"), 0), 2);
    CHECK_EQ_INT(zk_value_type(at_path("items[1].x")), ZK_TYPE_NULL);
    CHECK_EQ_INT(zk_value_type(at_path("items[2]")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("user.tags.a")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("user[0]")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("user.avatar[0]")), ZK_TYPE_NONE);
    CHECK(zk_value_double(at_path("big"), 0) == 18446744073709551616.0);
    CHECK_EQ_INT(zk_value_type(zk_value_get(root(), "")), ZK_TYPE_OBJECT);
    CHECK_EQ_INT(zk_value_len(zk_value_get(root(), "")), 0);
    items = zk_value_get(root(), "items");
    CHECK_EQ_INT(zk_value_int(zk_value_get(zk_value_at(items, 1), "id"), 0), 2);
    CHECK_EQ_INT(zk_value_type(zk_value_at(items, 2)), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(zk_value_at(items, (size_t)-1)), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_int(zk_value_path(items, "[1].id"), 0), 2);
    for (e = zk_value_first(root()); zk_value_type(e); e = zk_value_next(e), n++) {
        if (n >= 4) break;
        CHECK_STR(zk_value_key(e), keys[n]);
        CHECK_EQ_INT(zk_value_type(e), types[n]);
    }
    CHECK_EQ_INT(n, 4);
    /* inner keys do not leak into the outer iteration */
    e = zk_value_first(zk_value_get(root(), "user"));
    CHECK_STR(zk_value_key(e), "name");
    CHECK_STR(zk_value_key(zk_value_next(zk_value_next(zk_value_next(e)))), "age");
    CHECK_EQ_INT(zk_value_type(zk_value_next(zk_value_next(zk_value_next(zk_value_next(e))))),
                 ZK_TYPE_NONE);
    /* element access skips whole subtrees */
    CHECK_EQ_INT(mp("96 93 01 02 92 03 91 04 82 a1 'a' 92 04 81 a1 'b' 05 a1 'c' c0 05 80 90 06"),
                 ZK_OK);
    CHECK_EQ_INT(zk_value_len(root()), 6);
    CHECK_EQ_INT(zk_value_int(zk_value_at(root(), 2), 0), 5);
    CHECK_EQ_INT(zk_value_type(zk_value_at(root(), 3)), ZK_TYPE_OBJECT);
    CHECK_EQ_INT(zk_value_type(zk_value_at(root(), 4)), ZK_TYPE_ARRAY);
    CHECK_EQ_INT(zk_value_int(zk_value_at(root(), 5), 0), 6);
    CHECK_EQ_INT(zk_value_int(at_path("[1].a[1].b"), 0), 5);
    CHECK_EQ_INT(zk_value_int(at_path("[0][2][1][0]"), 0), 4);
}

/* ======================= decoding: invalid input ======================= */

TEST(refused_byte_c1) { check_bad_table(bad_reserved, COUNT(bad_reserved)); }
TEST(refused_ext_and_fixext) { check_bad_table(bad_ext, COUNT(bad_ext)); }
TEST(refused_nan_and_infinity) { check_bad_table(bad_nonfinite, COUNT(bad_nonfinite)); }
TEST(refused_keys_that_are_not_strings) { check_bad_table(bad_keys, COUNT(bad_keys)); }
TEST(refused_str_not_utf8) {
    size_t i;
    check_bad_table(bad_utf8, COUNT(bad_utf8));
    /* the same bytes as bin are fine: each fixstr case again as bin8 */
    for (i = 0; i < COUNT(bad_utf8); i++) {
        text in = hex(bad_utf8[i].hex);
        unsigned char tag = (unsigned char)in.p[0];
        if (tag >= 0xa0 && tag <= 0xbf && in.len == 1 + (size_t)(tag & 31)) {
            text bin = hex("c4");
            text_byte(&bin, tag & 31);
            text_add(&bin, in.p + 1, in.len - 1);
            CHECK_EQ_INT(mp_n(bin.p, bin.len), ZK_OK);
            CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_BINARY);
            CHECK_MEM(zk_value_str(root()).ptr, zk_value_str(root()).len, in.p + 1, in.len - 1);
            text_free(&bin);
        }
        text_free(&in);
    }
}
TEST(refused_truncated) { check_bad_table(bad_truncated, COUNT(bad_truncated)); }
TEST(refused_trailing_data) { check_bad_table(bad_trailing, COUNT(bad_trailing)); }

TEST(refused_empty_input) {
    zk_doc d = {0};
    check_bad_table(bad_empty, COUNT(bad_empty));
    CHECK_EQ_INT(zk_msgpack_parse(&d, NULL, 0), ZK_EPARSE);
    CHECK(d.error != NULL);
    CHECK_EQ_INT(zk_value_type(zk_doc_root(&d)), ZK_TYPE_NONE);
    zk_doc_free(&d);
}

/* Huge declared lengths: refused at once, with no allocation beyond the
   node array's first one, however much they promise. */
TEST(refused_huge_lengths_without_a_large_allocation) {
    size_t i;
    double start;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    start = (double)ts.tv_sec + ts.tv_nsec / 1e9;
    for (i = 0; i < COUNT(bad_huge); i++) {
        zk_doc d = {0};
        text in = hex(bad_huge[i].hex);
        int rc;
        alloc_largest = 0;
        rc = zk_msgpack_parse(&d, in.p, in.len);
        CHECK_EQ_INT(rc, ZK_EPARSE);
        CHECK(alloc_largest <= 64 * sizeof(zk__node));
        if (rc != ZK_EPARSE || alloc_largest > 64 * sizeof(zk__node))
            printf("    input %s: %s, largest allocation %zu bytes\n", bad_huge[i].hex,
                   zk_err_name(rc), alloc_largest);
        zk_doc_free(&d);
        /* and with the limits at their most */
        d.max_nodes = UINT32_MAX;
        alloc_largest = 0;
        rc = zk_msgpack_parse(&d, in.p, in.len);
        CHECK_EQ_INT(rc, ZK_EPARSE);
        CHECK(alloc_largest <= 64 * sizeof(zk__node));
        zk_doc_free(&d);
        text_free(&in);
    }
    /* a count the input could hold, past the node limit: ZK_ETOOBIG, and
       the node array stays within the limit */
    {
        zk_doc d = {0};
        text in = hex("dd 00 10 00 00");
        text_rep(&in, "\xc0", 0x100000);
        alloc_largest = 0;
        CHECK_EQ_INT(zk_msgpack_parse(&d, in.p, in.len), ZK_ETOOBIG);
        CHECK(alloc_largest <= (size_t)ZK_DOC_MAX_NODES * sizeof(zk__node));
        d.max_nodes = 1000;
        alloc_largest = 0;
        CHECK_EQ_INT(zk_msgpack_parse(&d, in.p, in.len), ZK_ETOOBIG);
        CHECK(alloc_largest <= 1000 * sizeof(zk__node));
        zk_doc_free(&d);
        text_free(&in);
    }
    /* lengths that exactly fit are fine, one more is refused */
    {
        static const char *const fit[][2] = {
            {"d9 03 'abc'", "d9 04 'abc'"}, {"da 00 03 'abc'", "da 00 04 'abc'"},
            {"db 00 00 00 03 'abc'", "db 00 00 00 04 'abc'"}, {"c4 03 'abc'", "c4 04 'abc'"},
            {"c5 00 03 'abc'", "c5 00 04 'abc'"}, {"c6 00 00 00 03 'abc'", "c6 00 00 00 04 'abc'"},
            {"dc 00 03 01 02 03", "dc 00 04 01 02 03"},
            {"dd 00 00 00 03 01 02 03", "dd 00 00 00 04 01 02 03"},
            {"de 00 01 a1 'a' 01", "de 00 02 a1 'a' 01"},
            {"df 00 00 00 01 a1 'a' 01", "df 00 00 00 02 a1 'a' 01"},
            {"a3 'abc'", "a4 'abc'"}, {"93 01 02 03", "94 01 02 03"},
        };
        for (i = 0; i < COUNT(fit); i++) {
            CHECK_EQ_INT(mp(fit[i][0]), ZK_OK);
            CHECK_EQ_INT(mp(fit[i][1]), ZK_EPARSE);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    CHECK((double)ts.tv_sec + ts.tv_nsec / 1e9 - start < 2.0);
}

/* ============================== limits =============================== */

static void nest(text *t, size_t depth, const char *open, const char *inner) {
    size_t i;
    t->len = 0;
    for (i = 0; i < depth; i++) hex_add(t, open);
    hex_add(t, inner);
}

TEST(depth_limit) {
    text t = {0};
    zk_value v;
    size_t i;
    nest(&t, ZK_DOC_MAX_DEPTH - 1, "91", "90");
    CHECK_EQ_INT(mp_n(t.p, t.len), ZK_OK);
    nest(&t, ZK_DOC_MAX_DEPTH, "91", "90");
    CHECK_EQ_INT(mp_n(t.p, t.len), ZK_ETOOBIG);
    CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_NONE);
    nest(&t, ZK_DOC_MAX_DEPTH, "91", "01");
    CHECK_EQ_INT(mp_n(t.p, t.len), ZK_OK);
    for (v = root(), i = 1; i < ZK_DOC_MAX_DEPTH; i++) v = zk_value_at(v, 0);
    CHECK_EQ_INT(zk_value_int(zk_value_at(v, 0), 0), 1);
    nest(&t, ZK_DOC_MAX_DEPTH + 1, "91", "01");
    CHECK_EQ_INT(mp_n(t.p, t.len), ZK_ETOOBIG);
    nest(&t, ZK_DOC_MAX_DEPTH, "81 a1 'a'", "01");
    CHECK_EQ_INT(mp_n(t.p, t.len), ZK_OK);
    nest(&t, ZK_DOC_MAX_DEPTH - 1, "81 a1 'a'", "80");
    CHECK_EQ_INT(mp_n(t.p, t.len), ZK_OK);
    nest(&t, ZK_DOC_MAX_DEPTH + 1, "81 a1 'a'", "01");
    CHECK_EQ_INT(mp_n(t.p, t.len), ZK_ETOOBIG);
    nest(&t, ZK_DOC_MAX_DEPTH, "81 a1 'a'", "80");
    CHECK_EQ_INT(mp_n(t.p, t.len), ZK_ETOOBIG);
    nest(&t, ZK_DOC_MAX_DEPTH / 2, "91 81 a1 'a'", "00");
    CHECK_EQ_INT(mp_n(t.p, t.len), ZK_OK);
    nest(&t, ZK_DOC_MAX_DEPTH / 2, "91 81 a1 'a'", "90");
    CHECK_EQ_INT(mp_n(t.p, t.len), ZK_ETOOBIG);
    /* the same with 16- and 32-bit headers */
    nest(&t, ZK_DOC_MAX_DEPTH, "dc 00 01", "c0");
    CHECK_EQ_INT(mp_n(t.p, t.len), ZK_OK);
    nest(&t, ZK_DOC_MAX_DEPTH + 1, "dc 00 01", "c0");
    CHECK_EQ_INT(mp_n(t.p, t.len), ZK_ETOOBIG);
    nest(&t, ZK_DOC_MAX_DEPTH, "df 00 00 00 01 a0", "c0");
    CHECK_EQ_INT(mp_n(t.p, t.len), ZK_OK);
    nest(&t, ZK_DOC_MAX_DEPTH + 1, "df 00 00 00 01 a0", "c0");
    CHECK_EQ_INT(mp_n(t.p, t.len), ZK_ETOOBIG);
    /* wide is not deep */
    t.len = 0;
    hex_add(&t, "dc 03 e9");
    for (i = 0; i < 1000; i++) hex_add(&t, "91 90");
    hex_add(&t, "90");
    CHECK_EQ_INT(mp_n(t.p, t.len), ZK_OK);
    CHECK_EQ_INT(zk_value_len(root()), 1001);
    text_free(&t);
}

TEST(depth_limit_custom) {
    zk_doc d = {0};
    text t = {0};
    d.max_depth = 3;
    nest(&t, 3, "91", "01");
    CHECK_EQ_INT(zk_msgpack_parse(&d, t.p, t.len), ZK_OK);
    nest(&t, 4, "91", "01");
    CHECK_EQ_INT(zk_msgpack_parse(&d, t.p, t.len), ZK_ETOOBIG);
    nest(&t, 2, "81 a1 'k'", "80");
    CHECK_EQ_INT(zk_msgpack_parse(&d, t.p, t.len), ZK_OK);
    nest(&t, 3, "81 a1 'k'", "80");
    CHECK_EQ_INT(zk_msgpack_parse(&d, t.p, t.len), ZK_ETOOBIG);
    d.max_depth = 1;
    nest(&t, 0, "", "92 01 02");
    CHECK_EQ_INT(zk_msgpack_parse(&d, t.p, t.len), ZK_OK);
    nest(&t, 0, "", "91 90");
    CHECK_EQ_INT(zk_msgpack_parse(&d, t.p, t.len), ZK_ETOOBIG);
    nest(&t, 0, "", "07");
    CHECK_EQ_INT(zk_msgpack_parse(&d, t.p, t.len), ZK_OK);
    /* above ZK_DOC_MAX_DEPTH means ZK_DOC_MAX_DEPTH */
    d.max_depth = 100000;
    nest(&t, ZK_DOC_MAX_DEPTH - 1, "91", "90");
    CHECK_EQ_INT(zk_msgpack_parse(&d, t.p, t.len), ZK_OK);
    nest(&t, ZK_DOC_MAX_DEPTH, "91", "90");
    CHECK_EQ_INT(zk_msgpack_parse(&d, t.p, t.len), ZK_ETOOBIG);
    text_free(&t);
    zk_doc_free(&d);
}

TEST(depth_100000_refused_without_recursion) {
    static const char *const shapes[][2] = {
        {"91", "90"}, {"81 a1 'a'", "01"}, {"91", ""}, {"dd 00 00 00 01", ""}, {"91 81 a0", ""},
        {"df 00 00 00 01 db 00 00 00 00", "c0"},
    };
    text t = {0};
    size_t k;
    struct timespec ts;
    double start;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    start = (double)ts.tv_sec + ts.tv_nsec / 1e9;
    for (k = 0; k < COUNT(shapes); k++) {
        nest(&t, 100000, shapes[k][0], shapes[k][1]);
        CHECK_EQ_INT(mp_n(t.p, t.len), ZK_ETOOBIG);
        CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_NONE);
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    CHECK((double)ts.tv_sec + ts.tv_nsec / 1e9 - start < 2.0);
    text_free(&t);
}

/* Parses hex into a fresh document limited to max_nodes values and keys. */
static int mp_max_nodes(uint32_t max_nodes, const char *h) {
    zk_doc d = {0};
    text t = hex(h);
    int rc;
    d.max_nodes = max_nodes;
    rc = zk_msgpack_parse(&d, t.p, t.len);
    zk_doc_free(&d);
    text_free(&t);
    return rc;
}

TEST(node_limit) {
    text t = hex("dd 00 01 00 00 00*65536");
    CHECK_EQ_INT(mp_n(t.p, t.len), ZK_ETOOBIG);
    CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_NONE);
    text_free(&t);
    CHECK_EQ_INT(mp_max_nodes(5, "94 01 02 03 04"), ZK_OK);
    CHECK_EQ_INT(mp_max_nodes(5, "95 01 02 03 04 05"), ZK_ETOOBIG);
    CHECK_EQ_INT(mp_max_nodes(5, "92 91 01 91 02"), ZK_OK);
    CHECK_EQ_INT(mp_max_nodes(5, "93 91 01 91 02 90"), ZK_ETOOBIG);
    CHECK_EQ_INT(mp_max_nodes(1, "90"), ZK_OK);
    CHECK_EQ_INT(mp_max_nodes(1, "91 01"), ZK_ETOOBIG);
    CHECK_EQ_INT(mp_max_nodes(1, "c0"), ZK_OK);
    /* keys are nodes too */
    CHECK_EQ_INT(mp_max_nodes(5, "82 a1 'a' 01 a1 'b' 02"), ZK_OK);
    CHECK_EQ_INT(mp_max_nodes(4, "82 a1 'a' 01 a1 'b' 02"), ZK_ETOOBIG);
    CHECK_EQ_INT(mp_max_nodes(4, "91 81 a1 'a' 01"), ZK_OK);
    CHECK_EQ_INT(mp_max_nodes(3, "91 81 a1 'a' 01"), ZK_ETOOBIG);
    /* and a larger limit than the default */
    {
        zk_doc d = {0};
        text big = hex("dd 00 01 11 70");
        text_rep(&big, "\x01", 70000);
        d.max_nodes = 70001;
        CHECK_EQ_INT(zk_msgpack_parse(&d, big.p, big.len), ZK_OK);
        d.max_nodes = 70000;
        CHECK_EQ_INT(zk_msgpack_parse(&d, big.p, big.len), ZK_ETOOBIG);
        zk_doc_free(&d);
        text_free(&big);
    }
}

/* A limit lowered on a document that parsed a larger input holds at once. */
TEST(node_limit_lowered_on_a_reused_doc) {
    zk_doc d = {0};
    text t = hex("97 01 02 03 04 05 06 07");
    CHECK_EQ_INT(zk_msgpack_parse(&d, t.p, t.len), ZK_OK);
    d.max_nodes = 3;
    CHECK_EQ_INT(zk_msgpack_parse(&d, t.p, t.len), ZK_ETOOBIG);
    text_free(&t);
    t = hex("92 01 02");
    CHECK_EQ_INT(zk_msgpack_parse(&d, t.p, t.len), ZK_OK);
    text_free(&t);
    zk_doc_free(&d);
}

/* One doc for both codecs, many documents, failures in between. */
TEST(one_doc_both_codecs) {
    zk_doc d;
    char json[32];
    text t = {0};
    size_t sizes[] = {1, 10, 5000, 3, 20000, 0, 100, 60000, 2};
    size_t k, i;
    zk_doc_init(&d);
    for (k = 0; k < COUNT(sizes); k++) {
        size_t n = sizes[k];
        t.len = 0;
        hex_add(&t, "82 a1 'n'");
        ref_int(&t, (int64_t)n);
        hex_add(&t, "a5 'items'");
        ref_array(&t, n);
        for (i = 0; i < n; i++) ref_int(&t, (int64_t)(i * 3));
        CHECK_EQ_INT(zk_msgpack_parse(&d, t.p, t.len), ZK_OK);
        CHECK_EQ_INT(zk_value_int(zk_value_get(zk_doc_root(&d), "n"), -1), n);
        CHECK_EQ_INT(zk_value_len(zk_value_get(zk_doc_root(&d), "items")), n);
        /* a failed parse in between leaves no root, and the next one works */
        CHECK_EQ_INT(zk_msgpack_parse(&d, t.p, t.len - 1), ZK_EPARSE);
        CHECK_EQ_INT(zk_value_type(zk_doc_root(&d)), ZK_TYPE_NONE);
        memcpy(json, "{\"a\":[1,2]}", 11);
        CHECK_EQ_INT(zk_json_parse(&d, json, 11), ZK_OK);
        CHECK_EQ_INT(zk_value_int(zk_value_path(zk_doc_root(&d), "a[1]"), 0), 2);
    }
    zk_doc_free(&d);
    text_free(&t);
}

/* ============================= guard page ============================= */

/* Parses s[0..n) placed against an unmapped page, in read-only memory
   (the decoder must not write to its input); returns the code and checks
   that the root agrees with it. */
static int guard_parse(const char *s, size_t n) {
    guard_buf g = guard_alloc(s, n);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    zk_doc d = {0};
    int rc;
    CHECK(mprotect(g.base, g.map_len - page, PROT_READ) == 0);
    rc = zk_msgpack_parse(&d, (const char *)g.data, n);
    CHECK(rc == ZK_OK || rc == ZK_EPARSE);
    if (rc == ZK_OK) CHECK(zk_value_type(zk_doc_root(&d)) != ZK_TYPE_NONE);
    else CHECK_EQ_INT(zk_value_type(zk_doc_root(&d)), ZK_TYPE_NONE);
    if (rc == ZK_EPARSE) CHECK(d.error_at <= n);
    zk_doc_free(&d);
    guard_free(&g);
    return rc;
}

TEST(guard_page_every_prefix) {
    size_t i, k, t;
    int reported = 0;
    for (i = 0; i < COUNT(good_docs); i++) {
        text in = hex(good_docs[i]);
        for (k = 0; k <= in.len; k++) {
            int rc = guard_parse(in.p, k);
            /* a proper prefix of one value is never a whole value */
            int want = k == in.len ? ZK_OK : ZK_EPARSE;
            CHECK_EQ_INT(rc, want);
            if (rc != want && reported++ < 5)
                printf("    %zu bytes of %s: %s\n", k, good_docs[i], zk_err_name(rc));
        }
        text_free(&in);
    }
    for (t = 0; t < COUNT(bad_tables); t++)
        for (i = 0; i < bad_tables[t].count; i++) {
            text in = hex(bad_tables[t].cases[i].hex);
            for (k = 0; k <= in.len; k++) {
                int rc = guard_parse(in.p, k);
                if (k == in.len) CHECK_EQ_INT(rc, ZK_EPARSE);
            }
            text_free(&in);
        }
}

TEST(out_of_memory) {
    zk_doc d = {0};
    text t = hex("92 01 02");
    zk_writer wr;
    alloc_fails = 1;
    CHECK_EQ_INT(zk_msgpack_parse(&d, t.p, t.len), ZK_ENOMEM);
    CHECK_EQ_INT(zk_value_type(zk_doc_root(&d)), ZK_TYPE_NONE);
    alloc_fails = 0;
    CHECK_EQ_INT(zk_msgpack_parse(&d, t.p, t.len), ZK_OK);
    zk_doc_free(&d);
    text_free(&t);
    zk_writer_init(&wr, NULL, 0);
    CHECK_EQ_INT(zk_writer_set_codec(&wr, ZK_CODEC_MSGPACK), ZK_OK);
    alloc_fails = 1;
    zk_write_int(&wr, 1);
    CHECK_EQ_INT(zk_writer_error(&wr), ZK_ENOMEM);
    CHECK(zk_writer_result(&wr).ptr == NULL);
    alloc_fails = 0;
    zk_writer_reset(&wr);
    zk_write_int(&wr, 1);
    CHECK_MEM(zk_writer_result(&wr).ptr, zk_writer_result(&wr).len, "\x01", 1);
    zk_writer_free(&wr);
}

/* ============================== encoding ============================== */

static zk_writer w; /* MessagePack, reused: zk_writer_reset between values */

static void check_result(const zk_writer *wr, const text *want, const char *what) {
    zk_str r = zk_writer_result(wr);
    CHECK_EQ_INT(zk_writer_error(wr), ZK_OK);
    CHECK_MEM(r.ptr, r.len, want->p, want->len);
    if (!r.ptr || r.len != want->len || memcmp(r.ptr, want->p, want->len) != 0) {
        printf("    %s: wrote ", what);
        show(r.ptr, r.len);
        printf(" (%s)\n    expected   ", zk_err_name(zk_writer_error(wr)));
        show(want->p, want->len);
        printf("\n");
    }
}

#define WRITES(calls, h)                                                      \
    do {                                                                      \
        text want_ = hex(h);                                                  \
        zk_writer_reset(&w);                                                  \
        calls;                                                                \
        check_result(&w, &want_, #calls);                                     \
        text_free(&want_);                                                    \
    } while (0)

static void msgpack_writer(zk_writer *wr) {
    zk_writer_init(wr, NULL, 0);
    CHECK_EQ_INT(zk_writer_set_codec(wr, ZK_CODEC_MSGPACK), ZK_OK);
}

TEST(write_ints_at_every_boundary) {
    static const struct {
        int64_t v;
        const char *hex;
    } ints[] = {
        {0, "00"}, {1, "01"}, {127, "7f"}, {128, "cc 80"}, {255, "cc ff"}, {256, "cd 01 00"},
        {32767, "cd 7f ff"}, {32768, "cd 80 00"}, {65535, "cd ff ff"}, {65536, "ce 00 01 00 00"},
        {INT64_C(2147483647), "ce 7f ff ff ff"}, {INT64_C(2147483648), "ce 80 00 00 00"},
        {INT64_C(4294967295), "ce ff ff ff ff"}, {INT64_C(4294967296), "cf 00 00 00 01 00 00 00 00"},
        {INT64_MAX, "cf 7f ff ff ff ff ff ff ff"},
        {-1, "ff"}, {-31, "e1"}, {-32, "e0"}, {-33, "d0 df"}, {-127, "d0 81"}, {-128, "d0 80"},
        {-129, "d1 ff 7f"}, {-32767, "d1 80 01"}, {-32768, "d1 80 00"}, {-32769, "d2 ff ff 7f ff"},
        {INT64_C(-2147483648), "d2 80 00 00 00"}, {INT64_C(-2147483649), "d3 ff ff ff ff 7f ff ff ff"},
        {INT64_MIN + 1, "d3 80 00 00 00 00 00 00 01"}, {INT64_MIN, "d3 80 00 00 00 00 00 00 00"},
    };
    size_t i;
    msgpack_writer(&w);
    for (i = 0; i < COUNT(ints); i++) {
        WRITES(zk_write_int(&w, ints[i].v), ints[i].hex);
        /* and the decoder reads it back as that int */
        CHECK_EQ_INT(mp(ints[i].hex), ZK_OK);
        CHECK_EQ_INT(zk_value_int(root(), 0), ints[i].v);
    }
    /* around every boundary, against the independent encoder */
    {
        static const int64_t edges[] = {0, 127, 128, 255, 256, 32767, 32768, 65535, 65536,
                                        INT64_C(2147483647), INT64_C(4294967295), INT64_MAX};
        int k, d;
        for (i = 0; i < COUNT(edges); i++)
            for (k = 0; k < 2; k++)
                for (d = -2; d <= 2; d++) {
                    int64_t v = k ? -edges[i] - 1 : edges[i];
                    text want = {0};
                    if ((d > 0 && v > INT64_MAX - d) || (d < 0 && v < INT64_MIN - d)) continue;
                    v += d;
                    ref_int(&want, v);
                    zk_writer_reset(&w);
                    zk_write_int(&w, v);
                    check_result(&w, &want, "an int near a boundary");
                    text_free(&want);
                }
    }
    zk_writer_free(&w);
}

TEST(write_scalars) {
    msgpack_writer(&w);
    WRITES(zk_write_null(&w), "c0");
    WRITES(zk_write_bool(&w, 0), "c2");
    WRITES(zk_write_bool(&w, 1), "c3");
    WRITES(zk_write_bool(&w, 7), "c3");
    WRITES(zk_write_str(&w, NULL), "c0");
    WRITES(zk_write_str(&w, ""), "a0");
    WRITES(zk_write_str(&w, "hello"), "a5 'hello'");
    WRITES(zk_write_str_n(&w, "a\0b", 3), "a3 'a' 00 'b'");
    WRITES(zk_write_str(&w, "caf\xC3\xA9"), "a5 'caf' c3 a9");
    /* doubles: always float64, even when integral or representable as float32 */
    WRITES(zk_write_double(&w, 1.5), "cb 3f f8 00 00 00 00 00 00");
    WRITES(zk_write_double(&w, 1.0), "cb 3f f0 00 00 00 00 00 00");
    WRITES(zk_write_double(&w, 0.0), "cb 00 00 00 00 00 00 00 00");
    WRITES(zk_write_double(&w, -0.0), "cb 80 00 00 00 00 00 00 00");
    WRITES(zk_write_double(&w, 0.1), "cb 3f b9 99 99 99 99 99 9a");
    WRITES(zk_write_double(&w, DBL_MAX), "cb 7f ef ff ff ff ff ff ff");
    WRITES(zk_write_double(&w, 4.9406564584124654e-324), "cb 00 00 00 00 00 00 00 01");
    WRITES(zk_write_double(&w, -9223372036854775808.0), "cb c3 e0 00 00 00 00 00 00");
    /* an int written as a double stays a double */
    zk_writer_reset(&w);
    zk_write_double(&w, 3.0);
    CHECK_EQ_INT(mp_n(zk_writer_result(&w).ptr, zk_writer_result(&w).len), ZK_OK);
    CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_DOUBLE);
    zk_writer_free(&w);
}

static void fill(text *t, size_t n) {
    size_t i;
    t->len = 0;
    text_add(t, "", 0);
    for (i = 0; i < n; i++) text_byte(t, 'a' + (int)(i % 26));
}

TEST(write_string_and_binary_lengths) {
    static const size_t lens[] = {0, 1, 31, 32, 255, 256, 65535, 65536, 100000};
    text s = {0}, want = {0};
    size_t i;
    msgpack_writer(&w);
    for (i = 0; i < COUNT(lens); i++) {
        size_t n = lens[i];
        fill(&s, n);
        /* str: fixstr up to 31, then str8, str16, str32 */
        want.len = 0;
        header(&want, STR, n, n < 32 ? 0 : n < 256 ? 1 : n < 65536 ? 2 : 3);
        text_add(&want, s.p, n);
        zk_writer_reset(&w);
        zk_write_str_n(&w, s.p, n);
        check_result(&w, &want, "a string");
        /* the same as a key */
        want.len = 0;
        hex_add(&want, "81");
        header(&want, STR, n, n < 32 ? 0 : n < 256 ? 1 : n < 65536 ? 2 : 3);
        text_add(&want, s.p, n);
        hex_add(&want, "c0");
        zk_writer_reset(&w);
        zk_write_object(&w);
        zk_write_key_n(&w, s.p, n);
        zk_write_null(&w);
        zk_write_end(&w);
        check_result(&w, &want, "a key");
        /* bin: bin8 from 0, then bin16, bin32 (there is no fixbin) */
        want.len = 0;
        header(&want, BIN, n, n < 256 ? 1 : n < 65536 ? 2 : 3);
        text_add(&want, s.p, n);
        zk_writer_reset(&w);
        zk_write_binary(&w, s.p, n);
        check_result(&w, &want, "binary");
    }
    WRITES(zk_write_binary(&w, "\x00\xff\x80", 3), "c4 03 00 ff 80");
    /* binary takes any bytes, a string only UTF-8 */
    WRITES(zk_write_binary(&w, "\xc0\x80", 2), "c4 02 c0 80");
    text_free(&s);
    text_free(&want);
    zk_writer_free(&w);
}

/* n elements (arrays) or members (maps) of nil */
static void write_container(zk_writer *wr, int object, size_t n) {
    size_t i;
    char key[24];
    if (object) zk_write_object(wr);
    else zk_write_array(wr);
    for (i = 0; i < n; i++) {
        if (object) {
            snprintf(key, sizeof key, "%zx", i);
            zk_write_key(wr, key);
        }
        zk_write_null(wr);
    }
    zk_write_end(wr);
}
static void ref_container(text *t, int object, size_t n) {
    size_t i;
    char key[24];
    if (object) ref_map(t, n);
    else ref_array(t, n);
    for (i = 0; i < n; i++) {
        if (object) {
            int kl = snprintf(key, sizeof key, "%zx", i);
            ref_str(t, key, (size_t)kl);
        }
        text_byte(t, 0xc0);
    }
}

TEST(write_container_sizes) {
    static const size_t sizes[] = {0, 1, 15, 16, 255, 256, 65535, 65536, 70000};
    text want = {0};
    size_t i;
    int object;
    msgpack_writer(&w);
    WRITES((zk_write_array(&w), zk_write_end(&w)), "90");
    WRITES((zk_write_object(&w), zk_write_end(&w)), "80");
    WRITES(write_container(&w, 0, 15), "9f c0*15");
    WRITES(write_container(&w, 0, 16), "dc 00 10 c0*16");
    WRITES(write_container(&w, 0, 65535), "dc ff ff c0*65535");
    WRITES(write_container(&w, 0, 65536), "dd 00 01 00 00 c0*65536");
    WRITES(write_container(&w, 1, 1), "81 a1 '0' c0");
    for (object = 0; object < 2; object++)
        for (i = 0; i < COUNT(sizes); i++) {
            want.len = 0;
            ref_container(&want, object, sizes[i]);
            zk_writer_reset(&w);
            write_container(&w, object, sizes[i]);
            check_result(&w, &want, object ? "a map" : "an array");
        }
    text_free(&want);
    zk_writer_free(&w);
}

/* Containers whose headers change size when they close, at every depth:
   each inner one is written before the outer one knows its own size. */
TEST(write_nested_headers_fitted_on_close) {
    static const size_t sizes[] = {0, 15, 16, 65535, 65536};
    text want = {0};
    size_t a, b;
    msgpack_writer(&w);
    WRITES((zk_write_array(&w), zk_write_array(&w), zk_write_int(&w, 1), zk_write_end(&w),
            zk_write_int(&w, 2), zk_write_end(&w)),
           "92 91 01 02");
    WRITES((zk_write_object(&w), zk_write_key(&w, "a"), zk_write_array(&w), zk_write_end(&w),
            zk_write_key(&w, "b"), zk_write_object(&w), zk_write_key(&w, "c"),
            zk_write_array(&w), zk_write_null(&w), zk_write_end(&w), zk_write_end(&w),
            zk_write_end(&w)),
           "82 a1 'a' 90 a1 'b' 81 a1 'c' 91 c0");
    /* [[16 nils], 2] */
    WRITES((zk_write_array(&w), write_container(&w, 0, 16), zk_write_int(&w, 2), zk_write_end(&w)),
           "92 dc 00 10 c0*16 02");
    /* three deep, the innermost of 65536: [[[65536 nils]]] */
    WRITES((zk_write_array(&w), zk_write_array(&w), write_container(&w, 0, 65536), zk_write_end(&w),
            zk_write_end(&w)),
           "91 91 dd 00 01 00 00 c0*65536");
    /* every pair of sizes: {"x": [a nils], "y": {b members}, "z": [[a], [b]]} followed by a
       sibling, inside an outer array of 16 (so the outer one grows too) */
    for (a = 0; a < COUNT(sizes); a++)
        for (b = 0; b < COUNT(sizes); b++) {
            size_t i;
            if (sizes[a] + sizes[b] > 70000) continue;
            want.len = 0;
            hex_add(&want, "dc 00 10 83 a1 'x'");
            ref_container(&want, 0, sizes[a]);
            hex_add(&want, "a1 'y'");
            ref_container(&want, 1, sizes[b]);
            hex_add(&want, "a1 'z' 92");
            ref_container(&want, 0, sizes[a]);
            ref_container(&want, 0, sizes[b]);
            for (i = 1; i < 16; i++) ref_int(&want, (int64_t)i * 1000);
            zk_writer_reset(&w);
            zk_write_array(&w);
            zk_write_object(&w);
            zk_write_key(&w, "x");
            write_container(&w, 0, sizes[a]);
            zk_write_key(&w, "y");
            write_container(&w, 1, sizes[b]);
            zk_write_key(&w, "z");
            zk_write_array(&w);
            write_container(&w, 0, sizes[a]);
            write_container(&w, 0, sizes[b]);
            zk_write_end(&w);
            zk_write_end(&w);
            for (i = 1; i < 16; i++) zk_write_int(&w, (int64_t)i * 1000);
            zk_write_end(&w);
            check_result(&w, &want, "nested containers");
        }
    text_free(&want);
    zk_writer_free(&w);
}

/* As in test_json: the first error is code, nothing is written by the
   calls after it, and there is no result. */
#define MISUSE(code, calls)                                                   \
    do {                                                                      \
        size_t len_;                                                          \
        zk_writer_reset(&w);                                                  \
        calls;                                                                \
        CHECK_EQ_INT(zk_writer_error(&w), code);                              \
        CHECK(zk_writer_result(&w).ptr == NULL && zk_writer_result(&w).len == 0); \
        len_ = w.len;                                                         \
        zk_write_int(&w, 1);                                                  \
        zk_write_end(&w);                                                     \
        zk_write_end(&w);                                                     \
        zk_write_str(&w, "more");                                             \
        zk_write_binary(&w, "b", 1);                                          \
        CHECK_EQ_INT(zk_writer_error(&w), code);                              \
        CHECK_EQ_INT(w.len, len_);                                            \
        CHECK(zk_writer_result(&w).ptr == NULL);                              \
    } while (0)

TEST(write_refusals) {
    static const char *const bad_utf8_strings[] = {
        "\xC0\x80", "\xED\xA0\x80", "\xE2\x82", "\xC3", "a\xC3", "\x80", "\xF4\x90\x80\x80",
        "\xFF",
    };
    const double nonfinite[] = {NAN, -NAN, INFINITY, -INFINITY, bits_double(UINT64_C(0x7FF0000000000001))};
    size_t i;
    msgpack_writer(&w);
    MISUSE(ZK_EINVAL, (zk_write_object(&w), zk_write_int(&w, 1)));   /* value without key */
    MISUSE(ZK_EINVAL, (zk_write_object(&w), zk_write_binary(&w, "x", 1)));
    MISUSE(ZK_EINVAL, (zk_write_object(&w), zk_write_array(&w)));
    MISUSE(ZK_EINVAL, (zk_write_object(&w), zk_write_key(&w, "a"), zk_write_int(&w, 1),
                       zk_write_int(&w, 2)));
    MISUSE(ZK_EINVAL, (zk_write_array(&w), zk_write_key(&w, "a")));  /* key in an array */
    MISUSE(ZK_EINVAL, (zk_write_key(&w, "a")));                       /* key at the root */
    MISUSE(ZK_EINVAL, (zk_write_end(&w)));
    MISUSE(ZK_EINVAL, (zk_write_array(&w), zk_write_end(&w), zk_write_end(&w)));
    MISUSE(ZK_EINVAL, (zk_write_int(&w, 1), zk_write_int(&w, 2)));   /* second root */
    MISUSE(ZK_EINVAL, (zk_write_binary(&w, "", 0), zk_write_null(&w)));
    MISUSE(ZK_EINVAL, (zk_write_object(&w), zk_write_key(&w, "a"), zk_write_key(&w, "b")));
    MISUSE(ZK_EINVAL, (zk_write_object(&w), zk_write_key(&w, "a"), zk_write_end(&w)));
    for (i = 0; i < COUNT(nonfinite); i++) {
        MISUSE(ZK_EINVAL, zk_write_double(&w, nonfinite[i]));
        MISUSE(ZK_EINVAL, (zk_write_array(&w), zk_write_double(&w, nonfinite[i])));
    }
    for (i = 0; i < COUNT(bad_utf8_strings); i++) {
        MISUSE(ZK_EINVAL, (zk_write_array(&w), zk_write_str(&w, bad_utf8_strings[i])));
        MISUSE(ZK_EINVAL, (zk_write_object(&w), zk_write_key(&w, bad_utf8_strings[i])));
    }
    MISUSE(ZK_ETOOBIG, {
        int k;
        for (k = 0; k <= ZK_DOC_MAX_DEPTH; k++) zk_write_array(&w);
    });
    /* the deepest allowed nesting is fine */
    {
        text want = {0};
        int k;
        zk_writer_reset(&w);
        for (k = 0; k < ZK_DOC_MAX_DEPTH; k++) {
            zk_write_object(&w);
            zk_write_key(&w, "a");
        }
        zk_write_int(&w, 1);
        for (k = 0; k < ZK_DOC_MAX_DEPTH; k++) {
            zk_write_end(&w);
            hex_add(&want, "81 a1 'a'");
        }
        hex_add(&want, "01");
        check_result(&w, &want, "the deepest nesting");
        text_free(&want);
    }
    /* no result before the root is closed, and no error either */
    zk_writer_reset(&w);
    zk_write_array(&w);
    zk_write_int(&w, 1);
    CHECK(zk_writer_result(&w).ptr == NULL && zk_writer_result(&w).len == 0);
    CHECK_EQ_INT(zk_writer_error(&w), ZK_OK);
    zk_write_end(&w);
    CHECK_MEM(zk_writer_result(&w).ptr, zk_writer_result(&w).len, "\x91\x01", 2);
    zk_writer_free(&w);
}

TEST(set_codec_rules) {
    zk_writer wr;
    zk_str r;
    zk_writer_init(&wr, NULL, 0);
    /* JSON by default */
    zk_write_int(&wr, 1);
    CHECK_STR(zk_writer_result(&wr), "1");
    /* only before writing */
    CHECK_EQ_INT(zk_writer_set_codec(&wr, ZK_CODEC_MSGPACK), ZK_EINVAL);
    zk_writer_reset(&wr);
    zk_write_array(&wr);
    CHECK_EQ_INT(zk_writer_set_codec(&wr, ZK_CODEC_MSGPACK), ZK_EINVAL);
    zk_write_int(&wr, 2);
    zk_write_end(&wr);
    /* the refusal did not switch codec in the middle of a value */
    r = zk_writer_result(&wr);
    CHECK(r.ptr == NULL || view_eq(r, zk_str_c("[2]")));
    /* only known codecs */
    zk_writer_reset(&wr);
    CHECK_EQ_INT(zk_writer_set_codec(&wr, 2), ZK_EINVAL);
    CHECK_EQ_INT(zk_writer_set_codec(&wr, -1), ZK_EINVAL);
    CHECK_EQ_INT(zk_writer_set_codec(&wr, 256 + ZK_CODEC_MSGPACK), ZK_EINVAL);
    zk_write_int(&wr, 3);
    CHECK_STR(zk_writer_result(&wr), "3");
    /* after reset; it stays through resets */
    zk_writer_reset(&wr);
    CHECK_EQ_INT(zk_writer_set_codec(&wr, ZK_CODEC_MSGPACK), ZK_OK);
    CHECK_EQ_INT(zk_writer_set_codec(&wr, ZK_CODEC_MSGPACK), ZK_OK); /* twice is fine */
    zk_write_int(&wr, 200);
    CHECK_MEM(zk_writer_result(&wr).ptr, zk_writer_result(&wr).len, "\xcc\xc8", 2);
    zk_writer_reset(&wr);
    zk_write_str(&wr, "x");
    CHECK_MEM(zk_writer_result(&wr).ptr, zk_writer_result(&wr).len, "\xa1x", 2);
    /* and back to JSON */
    zk_writer_reset(&wr);
    CHECK_EQ_INT(zk_writer_set_codec(&wr, ZK_CODEC_JSON), ZK_OK);
    zk_write_str(&wr, "x");
    CHECK_STR(zk_writer_result(&wr), "\"x\"");
    /* after a refused call the writer is not "before writing" */
    zk_writer_reset(&wr);
    CHECK_EQ_INT(zk_writer_set_codec(&wr, ZK_CODEC_MSGPACK), ZK_OK);
    zk_write_int(&wr, 5);
    CHECK_EQ_INT(zk_writer_set_codec(&wr, ZK_CODEC_JSON), ZK_EINVAL);
    CHECK_MEM(zk_writer_result(&wr).ptr, zk_writer_result(&wr).len, "\x05", 1);
    zk_writer_free(&wr);
    /* init starts with JSON again */
    zk_writer_init(&wr, NULL, 0);
    zk_write_null(&wr);
    CHECK_STR(zk_writer_result(&wr), "null");
    zk_writer_free(&wr);
    /* a fixed buffer can be set too */
    {
        char buf[16];
        zk_writer_init(&wr, buf, sizeof buf);
        CHECK_EQ_INT(zk_writer_set_codec(&wr, ZK_CODEC_MSGPACK), ZK_OK);
        zk_write_bool(&wr, 1);
        CHECK(zk_writer_result(&wr).ptr == buf);
        CHECK_MEM(zk_writer_result(&wr).ptr, zk_writer_result(&wr).len, "\xc3", 1);
        zk_writer_free(&wr);
    }
}

/* A sample with every kind of call and every header size but the 32-bit
   ones. */
static void write_sample(zk_writer *wr) {
    size_t i;
    zk_write_object(wr);
    zk_write_key(wr, "name");
    zk_write_str(wr, "caf\xC3\xA9 \"q\"");
    zk_write_key(wr, "list");
    zk_write_array(wr);
    zk_write_int(wr, INT64_MIN);
    zk_write_int(wr, 300);
    zk_write_double(wr, 0.1);
    zk_write_bool(wr, 1);
    zk_write_null(wr);
    zk_write_object(wr);
    zk_write_end(wr);
    zk_write_array(wr);
    for (i = 0; i < 20; i++) zk_write_int(wr, (int64_t)i);
    zk_write_end(wr);
    zk_write_binary(wr, "\x00\x01\x02", 3);
    zk_write_str(wr, "0123456789012345678901234567890123456789");
    zk_write_end(wr);
    zk_write_key_n(wr, "k\0", 2);
    zk_write_str_n(wr, "\0\0", 2);
    zk_write_end(wr);
}

TEST(write_fixed_buffer_every_size) {
    static const char zeros[4096];
    zk_str full;
    size_t n, cap;
    text copy = {0};
    int reported = 0;
    msgpack_writer(&w);
    write_sample(&w);
    full = zk_writer_result(&w);
    CHECK(full.ptr != NULL && full.len > 40);
    if (!full.ptr) return;
    n = full.len;
    text_add(&copy, full.ptr, n);
    CHECK_EQ_INT(mp_n(copy.p, n), ZK_OK);
    CHECK_STR(zk_value_str(zk_value_get(root(), "name")), "caf\xC3\xA9 \"q\"");
    CHECK_EQ_INT(zk_value_len(zk_value_get(root(), "list")), 9);
    zk_writer_free(&w);
    for (cap = 0; cap <= n + 8; cap++) {
        /* the buffer ends at an unmapped page: a write past cap faults */
        guard_buf g = guard_alloc(zeros, cap);
        zk_writer fw;
        int before = test__failed_checks;
        zk_writer_init(&fw, (char *)g.data, cap);
        CHECK_EQ_INT(zk_writer_set_codec(&fw, ZK_CODEC_MSGPACK), ZK_OK);
        write_sample(&fw);
        if (cap < n) {
            CHECK_EQ_INT(zk_writer_error(&fw), ZK_ENOSPACE);
            CHECK(zk_writer_result(&fw).ptr == NULL && zk_writer_result(&fw).len == 0);
        } else {
            /* the result fits: the writer must not need more room while
               it works than the result takes */
            CHECK_EQ_INT(zk_writer_error(&fw), ZK_OK);
            CHECK(zk_writer_result(&fw).ptr == (const char *)g.data);
            CHECK_MEM(zk_writer_result(&fw).ptr, zk_writer_result(&fw).len, copy.p, n);
        }
        if (test__failed_checks != before && reported++ < 3)
            printf("    capacity %zu for a %zu-byte result: %s\n", cap, n,
                   zk_err_name(zk_writer_error(&fw)));
        zk_writer_free(&fw); /* must not free the caller's buffer */
        guard_free(&g);
    }
    /* the smallest containers in a buffer of exactly their size */
    {
        static const char *const tiny[] = {"90", "80", "91 01", "92 90 80", "91 91 91 c0"};
        size_t i;
        for (i = 0; i < COUNT(tiny); i++) {
            char buf[8];
            text want = hex(tiny[i]);
            zk_writer fw;
            zk_writer_init(&fw, buf, want.len);
            zk_writer_set_codec(&fw, ZK_CODEC_MSGPACK);
            CHECK_EQ_INT(mp_n(want.p, want.len), ZK_OK);
            zk_write_value(&fw, root());
            check_result(&fw, &want, "a container in a buffer of its size");
            text_free(&want);
        }
    }
    text_free(&copy);
}

TEST(write_growable_max) {
    text s = {0};
    msgpack_writer(&w);
    w.max = 64;
    fill(&s, 62);
    zk_write_str_n(&w, s.p, 62); /* d9 3e + 62 bytes: exactly 64 */
    CHECK_EQ_INT(zk_writer_error(&w), ZK_OK);
    CHECK_EQ_INT(zk_writer_result(&w).len, 64);
    zk_writer_reset(&w);
    zk_write_str_n(&w, s.p, 63);
    CHECK(zk_writer_error(&w) == ZK_ETOOBIG || zk_writer_error(&w) == ZK_ENOSPACE);
    CHECK(zk_writer_result(&w).ptr == NULL);
    /* [str of 61]: 64 bytes once the array's header is fitted */
    zk_writer_reset(&w);
    zk_write_array(&w);
    zk_write_str_n(&w, s.p, 61);
    zk_write_end(&w);
    CHECK_EQ_INT(zk_writer_error(&w), ZK_OK);
    CHECK_EQ_INT(zk_writer_result(&w).len, 64);
    zk_writer_free(&w);
    text_free(&s);
}

/* ============================ base64 in JSON =========================== */

TEST(binary_in_json_is_base64) {
    static const char *const rfc4648[][2] = {
        {"", "\"\""}, {"f", "\"Zg==\""}, {"fo", "\"Zm8=\""}, {"foo", "\"Zm9v\""},
        {"foob", "\"Zm9vYg==\""}, {"fooba", "\"Zm9vYmE=\""}, {"foobar", "\"Zm9vYmFy\""},
    };
    zk_writer jw;
    size_t i, n;
    unsigned char all[256];
    text want = {0};
    zk_writer_init(&jw, NULL, 0);
    for (i = 0; i < COUNT(rfc4648); i++) {
        zk_writer_reset(&jw);
        zk_write_binary(&jw, rfc4648[i][0], strlen(rfc4648[i][0]));
        CHECK_EQ_INT(zk_writer_error(&jw), ZK_OK);
        CHECK_STR(zk_writer_result(&jw), rfc4648[i][1]);
    }
    for (i = 0; i < 256; i++) all[i] = (unsigned char)(255 - i);
    for (n = 0; n <= 256; n += (n < 8 ? 1 : 31)) {
        want.len = 0;
        hex_add(&want, "'[\"'");
        ref_base64(&want, all, n);
        hex_add(&want, "'\"]'");
        zk_writer_reset(&jw);
        zk_write_array(&jw);
        zk_write_binary(&jw, all, n);
        zk_write_end(&jw);
        CHECK_EQ_INT(zk_writer_error(&jw), ZK_OK);
        CHECK_STR(zk_writer_result(&jw), want.p);
    }
    /* as an object member */
    zk_writer_reset(&jw);
    zk_write_object(&jw);
    zk_write_key(&jw, "b");
    zk_write_binary(&jw, "\xff\xfe", 2);
    zk_write_end(&jw);
    CHECK_STR(zk_writer_result(&jw), "{\"b\":\"//4=\"}");
    zk_writer_free(&jw);
    text_free(&want);
}

/* ========================= between the codecs ========================= */

/* JSON text -> zk_json_parse -> zk_write_value to msgpack */
static void json_to_msgpack(const char *json, const char *h) {
    zk_doc d = {0};
    size_t n = strlen(json);
    char *copy = (char *)malloc(n + 1);
    text want = hex(h);
    memcpy(copy, json, n);
    CHECK_EQ_INT(zk_json_parse(&d, copy, n), ZK_OK);
    zk_writer_reset(&w);
    zk_write_value(&w, zk_doc_root(&d));
    check_result(&w, &want, json);
    free(copy);
    text_free(&want);
    zk_doc_free(&d);
}

TEST(write_value_json_doc_to_msgpack) {
    msgpack_writer(&w);
    json_to_msgpack("{\"a\":[1,-2,3.5,true,false,null,\"x\"],\"b\":{}}",
                    "82 a1 'a' 97 01 fe cb 40 0c 00 00 00 00 00 00 c3 c2 c0 a1 'x' a1 'b' 80");
    json_to_msgpack("[9223372036854775807,-9223372036854775808,9223372036854775808,1.0,-0.0]",
                    "95 cf 7f ff*7 d3 80 00*7 cb 43 e0 00*6 cb 3f f0 00*6 cb 80 00*6 00");
    json_to_msgpack("\"caf\\u00e9\\n\\u0000\"", "a7 'caf' c3 a9 0a 00");
    json_to_msgpack("{\"\\u0041\":1,\"A\":2}", "82 a1 'A' 01 a1 'A' 02");
    json_to_msgpack("[[],{},[[{}]]]", "93 90 80 91 91 80");
    json_to_msgpack("200", "cc c8");
    /* an inner value, as a member of a new object */
    {
        zk_doc d = {0};
        char json[] = "{\"x\":[1,{\"y\":\"z\"}],\"w\":0}";
        text want = hex("82 a4 'copy' 92 01 81 a1 'y' a1 'z' a1 's' a1 'z'");
        CHECK_EQ_INT(zk_json_parse(&d, json, strlen(json)), ZK_OK);
        zk_writer_reset(&w);
        zk_write_object(&w);
        zk_write_key(&w, "copy");
        zk_write_value(&w, zk_value_get(zk_doc_root(&d), "x"));
        zk_write_key(&w, "s");
        zk_write_value(&w, zk_value_path(zk_doc_root(&d), "x[1].y"));
        zk_write_end(&w);
        check_result(&w, &want, "inner values");
        /* a value in an object still needs a key; NONE is refused */
        MISUSE(ZK_EINVAL, (zk_write_object(&w), zk_write_value(&w, zk_doc_root(&d))));
        MISUSE(ZK_EINVAL, zk_write_value(&w, zk_value_get(zk_doc_root(&d), "nope")));
        text_free(&want);
        zk_doc_free(&d);
    }
    zk_writer_free(&w);
}

/* msgpack -> zk_msgpack_parse -> zk_write_value to JSON; the expected
   JSON is written with the JSON writer's own calls. */
TEST(write_value_msgpack_doc_to_json) {
    zk_writer jw, expect;
    zk_writer_init(&jw, NULL, 0);
    zk_writer_init(&expect, NULL, 0);
    CHECK_EQ_INT(mp("86 a1 'a' c4 03 01 02 03 a1 'b' ca 3f c0 00 00 a1 'c' cf ff*8 a1 'd' 92 c4 00 a0"
                    " a1 'e' d0 80 a1 'f' 81 a1 'g' c5 00 01 ff"),
                 ZK_OK);
    zk_write_value(&jw, root());
    zk_write_object(&expect);
    zk_write_key(&expect, "a");
    zk_write_str(&expect, "AQID");
    zk_write_key(&expect, "b");
    zk_write_double(&expect, 1.5);
    zk_write_key(&expect, "c");
    zk_write_double(&expect, 18446744073709551616.0);
    zk_write_key(&expect, "d");
    zk_write_array(&expect);
    zk_write_str(&expect, "");
    zk_write_str(&expect, "");
    zk_write_end(&expect);
    zk_write_key(&expect, "e");
    zk_write_int(&expect, -128);
    zk_write_key(&expect, "f");
    zk_write_object(&expect);
    zk_write_key(&expect, "g");
    zk_write_str(&expect, "/w==");
    zk_write_end(&expect);
    zk_write_end(&expect);
    CHECK_EQ_INT(zk_writer_error(&jw), ZK_OK);
    CHECK(view_eq(zk_writer_result(&jw), zk_writer_result(&expect)));
    if (!view_eq(zk_writer_result(&jw), zk_writer_result(&expect)))
        printf("    wrote %.*s\n    expected %.*s\n", (int)zk_writer_result(&jw).len,
               zk_writer_result(&jw).ptr ? zk_writer_result(&jw).ptr : "",
               (int)zk_writer_result(&expect).len, zk_writer_result(&expect).ptr);
    /* the JSON parses, and the nested document to msgpack again is the input */
    CHECK_EQ_INT(mp(nested_doc), ZK_OK);
    zk_writer_reset(&jw);
    zk_write_value(&jw, root());
    CHECK_EQ_INT(zk_writer_error(&jw), ZK_OK);
    {
        text json = {0};
        text_add(&json, zk_writer_result(&jw).ptr, zk_writer_result(&jw).len);
        CHECK(strstr(json.p, "\"avatar\":\"AAH/\"") != NULL);
        text_free(&json);
    }
    msgpack_writer(&w);
    zk_write_value(&w, root());
    {
        text want = hex(nested_doc);
        /* big (2^64 - 1) was a double: it comes back as float64 */
        want.len -= 9;
        hex_add(&want, "cb 43 f0 00*6");
        check_result(&w, &want, "the nested document again");
        text_free(&want);
    }
    zk_writer_free(&w);
    zk_writer_free(&jw);
    zk_writer_free(&expect);
}

/* ============================ round trips ============================ */

static uint64_t rng_state;
static uint64_t rnd(void) {
    uint64_t z = (rng_state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* ints near every MessagePack boundary, and any */
static int64_t rnd_int(void) {
    static const int64_t edges[] = {0, 31, 32, 127, 128, 255, 256, 32767, 32768, 65535, 65536,
                                    INT64_C(2147483647), INT64_C(4294967295), INT64_MAX};
    uint64_t u = rnd();
    int64_t v;
    switch (u % 4) {
    case 0:
        v = edges[(u >> 8) % COUNT(edges)];
        if ((u >> 16) % 3 == 0 && v > 0) v--;
        else if ((u >> 16) % 3 == 1 && v < INT64_MAX) v++;
        return (u >> 20) & 1 ? -v - 1 : v;
    case 1: return (int64_t)(u >> 40) - (1 << 23);
    default: memcpy(&v, &u, sizeof v); return v;
    }
}

static double rnd_double(void) {
    static const double special[] = {0.0, -0.0, DBL_MAX, -DBL_MIN, 4.9406564584124654e-324, 0.1,
                                     1.0, 100.0, 1e21, 9223372036854775808.0, 1.5, 1e300};
    uint64_t u = rnd();
    if (u % 3 == 0) return special[(u >> 8) % COUNT(special)];
    for (;;) {
        u = rnd();
        if ((u & UINT64_C(0x7FF0000000000000)) != UINT64_C(0x7FF0000000000000)) return bits_double(u);
    }
}

static size_t utf8_put(char *out, uint32_t cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 63));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 63));
        out[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 63));
    out[2] = (char)(0x80 | (cp >> 6 & 63));
    out[3] = (char)(0x80 | (cp & 63));
    return 4;
}

/* Up to 40 characters of every kind (needs 160 bytes). */
static size_t rnd_string(char *out) {
    size_t n = 0, count = rnd() % 41, i;
    for (i = 0; i < count; i++) {
        uint64_t u = rnd();
        uint32_t cp;
        switch (u % 6) {
        case 0: cp = (uint32_t)(u >> 8) % 0x20; break;
        case 1: cp = 0x80 + (uint32_t)(u >> 8) % (0x800 - 0x80); break;
        case 2:
            cp = 0x800 + (uint32_t)(u >> 8) % (0x10000 - 0x800);
            if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0x2028;
            break;
        case 3: cp = 0x10000 + (uint32_t)(u >> 8) % (0x110000 - 0x10000); break;
        default: cp = 0x20 + (uint32_t)(u >> 8) % 0x5F; break;
        }
        n += utf8_put(out + n, cp);
    }
    return n;
}

/* A random value of up to depth 4 (objects have distinct keys); with
   binary when bin is set. Containers are sometimes just past 15 (the
   fix forms' end) or large. */
static void gen_value(zk_writer *wr, int depth, int bin) {
    char s[192];
    size_t n, i, count;
    uint64_t u = rnd();
    switch (u % (depth < 4 ? 12 : 7)) {
    case 0: zk_write_null(wr); break;
    case 1: zk_write_bool(wr, (int)(rnd() & 1)); break;
    case 2: zk_write_int(wr, rnd_int()); break;
    case 3: zk_write_double(wr, rnd_double()); break;
    case 4:
        n = rnd_string(s);
        zk_write_str_n(wr, s, n);
        break;
    case 5:
        if (!bin) {
            zk_write_int(wr, rnd_int());
            break;
        }
        n = rnd() % 300;
        for (i = 0; i < n; i++) s[i % sizeof s] = (char)rnd();
        if (n > sizeof s) n = sizeof s;
        zk_write_binary(wr, s, n);
        break;
    case 6: { /* a long string: str8 or str16 */
        char big[400];
        count = rnd() % 3 ? 20 + rnd() % 20 : 200 + rnd() % 200;
        for (i = 0; i < count; i++) big[i] = (char)('a' + rnd() % 26);
        zk_write_str_n(wr, big, count);
        break;
    }
    case 7:
    case 8:
        zk_write_array(wr);
        count = (u >> 8) % 4 == 0 ? 14 + rnd() % 4 : (u >> 8) % 16 == 1 && depth == 3 ? 300 : rnd() % 6;
        for (i = 0; i < count; i++) gen_value(wr, depth + 1, bin);
        zk_write_end(wr);
        break;
    default:
        zk_write_object(wr);
        count = (u >> 8) % 4 == 0 ? 14 + rnd() % 4 : rnd() % 6;
        for (i = 0; i < count; i++) {
            n = (size_t)snprintf(s, sizeof s, "k%zu_", i);
            n += rnd_string(s + n);
            zk_write_key_n(wr, s, n);
            gen_value(wr, depth + 1, bin);
        }
        zk_write_end(wr);
        break;
    }
}

/* Writes one random value into a JSON and a msgpack writer (the same
   value: the generator is rewound between them). */
static void gen_both(zk_writer *jw, zk_writer *mw, int bin) {
    uint64_t saved = rng_state;
    zk_writer_reset(jw);
    gen_value(jw, 0, bin);
    rng_state = saved;
    zk_writer_reset(mw);
    gen_value(mw, 0, bin);
}

/* JSON -> msgpack -> JSON gives back the same canonical JSON; the msgpack
   is the independent encoder's smallest form; msgpack -> msgpack is a
   fixed point. */
static void round_trip_json(const char *json, size_t n, int *reported) {
    zk_doc d1 = {0}, d2 = {0};
    zk_writer jw, mw;
    char *copy = (char *)malloc(n ? n : 1);
    zk_str canon, packed, back;
    text ref = {0};
    int before = test__failed_checks;
    memcpy(copy, json, n);
    zk_writer_init(&jw, NULL, 0);
    msgpack_writer(&mw);
    CHECK_EQ_INT(zk_json_parse(&d1, copy, n), ZK_OK);
    zk_write_value(&jw, zk_doc_root(&d1)); /* the canonical form */
    canon = zk_writer_result(&jw);
    zk_write_value(&mw, zk_doc_root(&d1));
    packed = zk_writer_result(&mw);
    CHECK(canon.ptr != NULL && packed.ptr != NULL);
    if (canon.ptr && packed.ptr) {
        char *jcopy = (char *)malloc(canon.len);
        ref_encode(&ref, zk_doc_root(&d1));
        CHECK_MEM(packed.ptr, packed.len, ref.p, ref.len);
        /* d2 is read from a copy: the writer's buffer is written again below */
        ref.len = 0;
        text_add(&ref, packed.ptr, packed.len);
        CHECK_EQ_INT(zk_msgpack_parse(&d2, ref.p, ref.len), ZK_OK);
        CHECK(same_value(zk_doc_root(&d1), zk_doc_root(&d2)));
        /* msgpack doc -> JSON: the canonical text */
        memcpy(jcopy, canon.ptr, canon.len);
        zk_writer_reset(&jw);
        zk_write_value(&jw, zk_doc_root(&d2));
        back = zk_writer_result(&jw);
        CHECK_MEM(back.ptr, back.len, jcopy, canon.len);
        /* msgpack doc -> msgpack: the same bytes */
        zk_writer_reset(&mw);
        zk_write_value(&mw, zk_doc_root(&d2));
        CHECK_MEM(zk_writer_result(&mw).ptr, zk_writer_result(&mw).len, ref.p, ref.len);
        if (test__failed_checks != before && (*reported)++ < 3) {
            printf("    JSON %.*s\n    msgpack ", (int)(n < 200 ? n : 200), json);
            show(ref.p, ref.len);
            printf("\n");
        }
        free(jcopy);
    }
    free(copy);
    text_free(&ref);
    zk_writer_free(&jw);
    zk_writer_free(&mw);
    zk_doc_free(&d1);
    zk_doc_free(&d2);
}

TEST(round_trip_json_msgpack_json) {
    static const char *const docs[] = {
        "null", "true", "false", "0", "-0", "1", "-1", "127", "128", "-32", "-33", "255", "256",
        "65535", "65536", "4294967295", "4294967296", "9223372036854775807",
        "-9223372036854775808", "9223372036854775808", "18446744073709551616", "1.5", "-0.0",
        "1e2", "0.1", "5e-324", "1.7976931348623157e308", "\"\"", "\"abc\"",
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\\u001f\"", "\"\\ud83d\\ude00\xC3\xA9\xE2\x80\xA8\"",
        "[]", "{}", "[[]]", "[{}]", "{\"\":{}}", "[1,2,3]", "{\"a\":1,\"a\":2}",
        "{\"a\":{\"b\":[0,1,{\"c\":\"x\"}]},\"arr\":[[5,6]]}",
        "[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14]", "[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]",
        ("{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9,\"j\":10,"
         "\"k\":11,\"l\":12,\"m\":13,\"n\":14,\"o\":15,\"p\":16}"),
        "{\"type\":\"chat.send\",\"payload\":{\"text\":\"hi\",\"n\":[1,2.5,null]},\"rpcId\":\"c1\"}",
        "[[[[[[[[[[1]]]]]]]]]]",
    };
    size_t i;
    int reported = 0;
    zk_writer jw, mw;
    for (i = 0; i < COUNT(docs); i++) round_trip_json(docs[i], strlen(docs[i]), &reported);
    /* random documents, written by the JSON writer */
    rng_state = 4242;
    zk_writer_init(&jw, NULL, 0);
    msgpack_writer(&mw);
    for (i = 0; i < 300; i++) {
        zk_str r;
        zk_writer_reset(&jw);
        gen_value(&jw, 0, 0);
        r = zk_writer_result(&jw);
        CHECK(r.ptr != NULL);
        if (r.ptr) round_trip_json(r.ptr, r.len, &reported);
    }
    zk_writer_free(&jw);
    zk_writer_free(&mw);
}

/* The same calls into both writers: the msgpack result decodes to the
   JSON result's tree (binary as its base64 string), and is the smallest
   form. */
TEST(round_trip_random_msgpack_writer) {
    zk_writer jw, mw;
    zk_doc dm = {0};
    int i, reported = 0;
    rng_state = 99;
    zk_writer_init(&jw, NULL, 0);
    msgpack_writer(&mw);
    for (i = 0; i < 500; i++) {
        zk_str rj, rm;
        text ref = {0};
        int before = test__failed_checks;
        gen_both(&jw, &mw, 1);
        rj = zk_writer_result(&jw);
        rm = zk_writer_result(&mw);
        CHECK_EQ_INT(zk_writer_error(&mw), ZK_OK);
        CHECK(rj.ptr != NULL && rm.ptr != NULL);
        if (!rj.ptr || !rm.ptr) continue;
        CHECK_EQ_INT(zk_msgpack_parse(&dm, rm.ptr, rm.len), ZK_OK);
        ref_encode(&ref, zk_doc_root(&dm));
        CHECK_MEM(rm.ptr, rm.len, ref.p, ref.len);
        /* msgpack doc -> JSON gives the JSON writer's bytes */
        {
            zk_writer back;
            zk_writer_init(&back, NULL, 0);
            zk_write_value(&back, zk_doc_root(&dm));
            CHECK(view_eq(zk_writer_result(&back), rj));
            zk_writer_free(&back);
        }
        if (test__failed_checks != before && reported++ < 3) {
            printf("    value %d: JSON %.*s\n    msgpack ", i, (int)(rj.len < 300 ? rj.len : 300),
                   rj.ptr);
            show(rm.ptr, rm.len);
            printf("\n");
        }
        text_free(&ref);
    }
    zk_writer_free(&jw);
    zk_writer_free(&mw);
    zk_doc_free(&dm);
}

/* ================== interop: Debian's python3-msgpack ================== */

#define PYTHON "/usr/bin/python3"

static int skipped;

/* 1 when python3-msgpack is missing: SKIPPED, or under CI=true a failure. */
static int python_msgpack_missing(const char *name) {
    const char *ci = getenv("CI");
    fflush(stdout);
    if (access(PYTHON, X_OK) == 0 && system(PYTHON " -c \"import msgpack\" >/dev/null 2>&1") == 0)
        return 0;
    if (ci && strcmp(ci, "true") == 0) {
        test__failed++;
        printf("FAIL %s: python3-msgpack is not installed (CI=true: a missing dependency is a "
               "failure)\n",
               name);
    } else {
        skipped++;
        printf("SKIPPED %s: python3-msgpack is not installed (tools/deps.sh msgpack)\n", name);
    }
    return 1;
}

/* Writes content to a new temporary file; its path goes to path. */
static int write_temp(char *path, const void *content, size_t n) {
    int fd = mkstemp(path);
    FILE *f;
    if (fd < 0) return -1;
    f = fdopen(fd, "wb");
    if (!f) return -1;
    if (n && fwrite(content, 1, n, f) != n) {
        fclose(f);
        return -1;
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* Runs the script with arg, reads at most 64 MiB of its output into out;
   returns its exit status. */
static int run_python(const char *script, const char *arg, text *out) {
    char path[] = "/tmp/zk_test_msgpack_py_XXXXXX";
    char cmd[512];
    char chunk[65536];
    size_t got;
    FILE *p;
    int status;
    if (write_temp(path, script, strlen(script)) != 0) return -1;
    snprintf(cmd, sizeof cmd, PYTHON " %s %s", path, arg ? arg : "");
    fflush(stdout);
    p = popen(cmd, "r");
    if (!p) {
        unlink(path);
        return -1;
    }
    while ((got = fread(chunk, 1, sizeof chunk, p)) > 0) {
        if (out->len + got > (64u << 20)) break;
        text_add(out, chunk, got);
    }
    status = pclose(p);
    unlink(path);
    return status;
}

static const char python_common[] =
    "import base64, json, random, struct, sys\n"
    "import msgpack\n"
    "def view(v):\n"
    "    if isinstance(v, bytes):\n"
    "        return base64.b64encode(v).decode(\"ascii\")\n"
    "    if isinstance(v, list):\n"
    "        return [view(x) for x in v]\n"
    "    if isinstance(v, dict):\n"
    "        return {k: view(x) for k, x in v.items()}\n"
    "    return v\n"
    "def dumps(v):\n"
    "    return json.dumps(view(v), ensure_ascii=False, separators=(\",\", \":\"), allow_nan=False).encode(\"utf-8\")\n"
    "def pack(v, **kw):\n"
    "    return msgpack.packb(v, use_bin_type=True, **kw)\n";

/* Python packs values; one record each: ok (1 byte), lengths of the
   msgpack and of the expected JSON (4 bytes each, big-endian), both. */
static const char python_packs[] =
    "out = sys.stdout.buffer\n"
    "def emit(packed, ok=1):\n"
    "    js = b\"\"\n"
    "    if ok:\n"
    "        try:\n"
    "            js = dumps(msgpack.unpackb(packed, raw=False))\n"
    "        except ValueError:  # NaN or an infinity, from a float32 out of range\n"
    "            ok = 0\n"
    "    out.write(struct.pack(\">BII\", ok, len(packed), len(js)) + packed + js)\n"
    "ints = set()\n"
    "for b in range(65):\n"
    "    for d in (-1, 0, 1):\n"
    "        ints.add(2 ** b + d)\n"
    "        ints.add(-(2 ** b) + d)\n"
    "for v in sorted(ints):\n"
    "    if -2 ** 63 <= v < 2 ** 64:\n"
    "        emit(pack(v))\n"
    "floats = [0.0, -0.0, 1.5, -2.25, 0.1, 1e300, -1e-300, 5e-324, 2.2250738585072014e-308,\n"
    "          1.7976931348623157e308, 3.4028234663852886e38, 1.401298464324817e-45, 16777217.0,\n"
    "          9007199254740993.0, 1e-40, 123.456, -1e38, 2.0 ** 63]\n"
    "for f in floats:\n"
    "    emit(pack(f))\n"
    "    emit(pack(f, use_single_float=True))\n"
    "for v in [None, True, False, \"\", \"a\", \"\\u00e9\\u20ac\\U0001f600\", \"x\" * 31, \"x\" * 32,\n"
    "          \"y\" * 255, \"y\" * 256, \"z\" * 65535, \"z\" * 65536, \"\\x00\\x1f\\\"\\\\/\\u2028\\x7f\",\n"
    "          b\"\", b\"\\x00\\xff\", bytes(range(256)), b\"b\" * 65535, b\"b\" * 65536,\n"
    "          [], [1] * 15, [1] * 16, [None] * 65535, {}, {str(i): i for i in range(15)},\n"
    "          {str(i): i for i in range(16)}, {\"k%d\" % i: None for i in range(40000)},\n"
    "          {\"a\": [1, {\"b\": [b\"\\x01\", 2.5, None]}], \"\": {}}]:\n"
    "    emit(pack(v))\n"
    "rng = random.Random(2025)\n"
    "def gen(depth):\n"
    "    k = rng.randrange(11 if depth < 4 else 7)\n"
    "    if k == 0: return None\n"
    "    if k == 1: return rng.random() < 0.5\n"
    "    if k == 2: return rng.randrange(-2 ** 63, 2 ** 64)\n"
    "    if k == 3: return rng.randrange(-2 ** rng.randrange(64), 2 ** rng.randrange(64))\n"
    "    if k == 4:\n"
    "        while True:\n"
    "            f = struct.unpack(\"<d\", struct.pack(\"<Q\", rng.getrandbits(64)))[0]\n"
    "            if f == f and abs(f) != float(\"inf\"): return f\n"
    "    if k == 5:\n"
    "        return \"\".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0, 32),\n"
    "            rng.randrange(128, 0xd800), rng.randrange(0xe000, 0x110000)]))\n"
    "            for _ in range(rng.choice([0, 3, 31, 32, 300])))\n"
    "    if k == 6: return bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 255, 256, 1000])))\n"
    "    if k < 9: return [gen(depth + 1) for _ in range(rng.choice([0, 1, 15, 16, 3]))]\n"
    "    return {\"k%d\" % i + gen_key(): gen(depth + 1) for i in range(rng.choice([0, 1, 15, 16, 3]))}\n"
    "def gen_key():\n"
    "    return \"\".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(5)))\n"
    "for i in range(300):\n"
    "    v = gen(0)\n"
    "    emit(pack(v, use_single_float=(i % 3 == 0)))\n"
    "# refused: ext, non-string keys, str not UTF-8, NaN and infinities, trailing and missing bytes\n"
    "bad = [pack(msgpack.ExtType(5, b\"abc\")), pack(msgpack.ExtType(127, b\"\\x00\" * 4)),\n"
    "       pack(msgpack.ExtType(1, b\"x\" * 300)), pack([1, msgpack.ExtType(1, b\"\")]),\n"
    "       pack({\"a\": msgpack.ExtType(2, b\"yy\")}), pack(msgpack.Timestamp(1, 5)),\n"
    "       pack({1: 2}), pack({None: 1}), pack({b\"k\": 1}), pack({(1, 2): 3}), pack({1.5: 1}),\n"
    "       pack({True: 1}), pack({\"ok\": {2: 3}}),\n"
    "       msgpack.packb(b\"\\xff\\xfe\", use_bin_type=False), msgpack.packb([\"ok\", b\"\\xc3\\x28\"], use_bin_type=False),\n"
    "       msgpack.packb({b\"\\xed\\xa0\\x80\": 1}, use_bin_type=False),\n"
    "       pack(float(\"nan\")), pack(float(\"inf\")), pack(float(\"-inf\")),\n"
    "       pack(float(\"nan\"), use_single_float=True), pack(float(\"-inf\"), use_single_float=True),\n"
    "       pack([1.0, float(\"inf\")]), pack(1) + pack(2), pack([1, 2, 3])[:-1], pack(\"abc\")[:-1],\n"
    "       pack({\"a\": 1})[:-1], pack(b\"xyz\")[:-1], b\"\\xc1\", pack([None, None])[:1]]\n"
    "for b in bad:\n"
    "    emit(b, 0)\n";

static uint32_t be32(const char *p) {
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

TEST(interop_we_decode_what_python_packs) {
    text script = {0}, out = {0};
    zk_doc dm = {0}, dj = {0};
    zk_writer jw;
    size_t at = 0;
    int status, records = 0, good = 0, bad = 0, reported = 0;
    text_str(&script, python_common);
    text_str(&script, python_packs);
    status = run_python(script.p, NULL, &out);
    CHECK_EQ_INT(status, 0);
    zk_writer_init(&jw, NULL, 0);
    dm.max_nodes = dj.max_nodes = 1u << 20;
    while (at + 9 <= out.len) {
        int ok = (unsigned char)out.p[at];
        size_t mn = be32(out.p + at + 1), jn = be32(out.p + at + 5);
        const char *m = out.p + at + 9, *j = m + mn;
        int before = test__failed_checks, rc;
        char *mcopy, *jcopy;
        if (at + 9 + mn + jn > out.len) break;
        at += 9 + mn + jn;
        records++;
        mcopy = (char *)malloc(mn ? mn : 1);
        memcpy(mcopy, m, mn);
        rc = zk_msgpack_parse(&dm, mcopy, mn);
        if (!ok) {
            bad++;
            CHECK_EQ_INT(rc, ZK_EPARSE);
        } else {
            good++;
            CHECK_EQ_INT(rc, ZK_OK);
            if (rc == ZK_OK) {
                zk_str r;
                /* what we read, as JSON, is what Python read */
                zk_writer_reset(&jw);
                zk_write_value(&jw, zk_doc_root(&dm));
                r = zk_writer_result(&jw);
                CHECK(r.ptr != NULL);
                jcopy = (char *)malloc(jn ? jn : 1);
                memcpy(jcopy, j, jn);
                CHECK_EQ_INT(zk_json_parse(&dj, jcopy, jn), ZK_OK);
                if (r.ptr) {
                    zk_doc mine = {0};
                    char *rcopy = (char *)malloc(r.len);
                    memcpy(rcopy, r.ptr, r.len);
                    mine.max_nodes = 1u << 20;
                    CHECK_EQ_INT(zk_json_parse(&mine, rcopy, r.len), ZK_OK);
                    CHECK(same_value(zk_doc_root(&mine), zk_doc_root(&dj)));
                    free(rcopy);
                    zk_doc_free(&mine);
                }
                free(jcopy);
            }
        }
        if (test__failed_checks != before && reported++ < 5) {
            printf("    record %d (%s): ", records, ok ? "valid" : "invalid");
            show(m, mn);
            printf("\n    python: %.*s\n    ours: %s %s\n", (int)(jn < 200 ? jn : 200), j,
                   zk_err_name(rc), rc == ZK_EPARSE ? dm.error : "");
        }
        free(mcopy);
    }
    CHECK_EQ_INT(at, out.len);
    CHECK(good > 500 && bad >= 28);
    if (getenv("TEST_VERBOSE")) printf("    %d records from python, %d valid\n", records, good);
    zk_writer_free(&jw);
    zk_doc_free(&dm);
    zk_doc_free(&dj);
    text_free(&script);
    text_free(&out);
}

/* Python reads what we pack: a line per record, "1" when packb of what it
   read gives our bytes back (both the smallest form), then its JSON. */
static const char python_unpacks[] =
    "out = sys.stdout.buffer\n"
    "data = open(sys.argv[1], \"rb\").read()\n"
    "at = 0\n"
    "while at < len(data):\n"
    "    n = struct.unpack(\">I\", data[at:at + 4])[0]\n"
    "    b = data[at + 4:at + 4 + n]\n"
    "    at += 4 + n\n"
    "    try:\n"
    "        v = msgpack.unpackb(b, raw=False, strict_map_key=True)\n"
    "        out.write((b\"1\" if pack(v) == b else b\"0\") + dumps(v) + b\"\\n\")\n"
    "    except Exception as e:\n"
    "        out.write(b\"E\" + repr(e).encode(\"utf-8\").replace(b\"\\n\", b\" \") + b\"\\n\")\n";

TEST(interop_python_decodes_what_we_pack) {
    enum { RANDOM = 300 };
    char path[] = "/tmp/zk_test_msgpack_XXXXXX";
    text records = {0}, script = {0}, out = {0}, arg = {0};
    text *jsons = NULL;
    size_t njson = 0, i, start;
    zk_writer jw, mw;
    zk_doc d1 = {0}, d2 = {0};
    int status, reported = 0;
    zk_writer_init(&jw, NULL, 0);
    msgpack_writer(&mw);
    jsons = (text *)calloc(RANDOM + 200, sizeof *jsons);
    /* fixed values at every boundary, then random documents */
    {
        static const int64_t ints[] = {0, 127, 128, 255, 256, 65535, 65536, INT64_C(4294967295),
                                       INT64_C(4294967296), INT64_MAX, -1, -32, -33, -128, -129,
                                       -32768, -32769, INT64_C(-2147483648),
                                       INT64_C(-2147483649), INT64_MIN};
        static const size_t lens[] = {0, 31, 32, 255, 256, 65535, 65536};
        text s = {0};
        size_t k;
        for (k = 0; k < COUNT(ints) + 3 * COUNT(lens) + 2; k++) {
            zk_writer *ws[2];
            int x;
            ws[0] = &jw;
            ws[1] = &mw;
            for (x = 0; x < 2; x++) {
                zk_writer *wr = ws[x];
                zk_writer_reset(wr);
                if (k < COUNT(ints)) {
                    zk_write_int(wr, ints[k]);
                } else if (k < COUNT(ints) + 3 * COUNT(lens)) {
                    size_t q = k - COUNT(ints), n = lens[q % COUNT(lens)];
                    fill(&s, n);
                    if (q / COUNT(lens) == 0) zk_write_str_n(wr, s.p, n);
                    else if (q / COUNT(lens) == 1) zk_write_binary(wr, s.p, n);
                    else write_container(wr, (int)(n & 1), n);
                } else if (k == COUNT(ints) + 3 * COUNT(lens)) {
                    write_container(wr, 1, 65536);
                } else {
                    zk_write_array(wr);
                    zk_write_double(wr, 0.1);
                    zk_write_double(wr, -0.0);
                    zk_write_double(wr, DBL_MAX);
                    zk_write_bool(wr, 0);
                    zk_write_null(wr);
                    zk_write_end(wr);
                }
            }
            CHECK(zk_writer_result(&mw).ptr != NULL && zk_writer_result(&jw).ptr != NULL);
            text_be(&records, zk_writer_result(&mw).len, 4);
            text_add(&records, zk_writer_result(&mw).ptr, zk_writer_result(&mw).len);
            text_add(&jsons[njson++], zk_writer_result(&jw).ptr, zk_writer_result(&jw).len);
        }
        text_free(&s);
    }
    rng_state = 31337;
    for (i = 0; i < RANDOM; i++) {
        gen_both(&jw, &mw, 1);
        CHECK(zk_writer_result(&mw).ptr != NULL && zk_writer_result(&jw).ptr != NULL);
        text_be(&records, zk_writer_result(&mw).len, 4);
        text_add(&records, zk_writer_result(&mw).ptr, zk_writer_result(&mw).len);
        text_add(&jsons[njson++], zk_writer_result(&jw).ptr, zk_writer_result(&jw).len);
    }
    CHECK(write_temp(path, records.p, records.len) == 0);
    text_str(&script, python_common);
    text_str(&script, python_unpacks);
    text_str(&arg, path);
    status = run_python(script.p, arg.p, &out);
    unlink(path);
    CHECK_EQ_INT(status, 0);
    d1.max_nodes = d2.max_nodes = 1u << 20;
    for (i = 0, start = 0; i < njson && start < out.len; i++) {
        char *nl = (char *)memchr(out.p + start, '\n', out.len - start);
        size_t n = nl ? (size_t)(nl - out.p) - start : out.len - start;
        char *line = out.p + start;
        int before = test__failed_checks;
        CHECK(n > 0 && line[0] == '1'); /* python read it, and packs it to the same bytes */
        if (n > 0 && line[0] != 'E') {
            CHECK_EQ_INT(zk_json_parse(&d1, jsons[i].p, jsons[i].len), ZK_OK);
            CHECK_EQ_INT(zk_json_parse(&d2, line + 1, n - 1), ZK_OK);
            CHECK(same_value(zk_doc_root(&d1), zk_doc_root(&d2)));
        }
        if (test__failed_checks != before && reported++ < 3)
            printf("    record %zu\n    ours:   %.*s\n    python: %.*s\n", i,
                   (int)(jsons[i].len < 300 ? jsons[i].len : 300), jsons[i].p,
                   (int)(n < 300 ? n : 300), line);
        start += n + 1;
    }
    CHECK_EQ_INT(i, njson);
    for (i = 0; i < njson; i++) text_free(&jsons[i]);
    free(jsons);
    text_free(&records);
    text_free(&script);
    text_free(&out);
    text_free(&arg);
    zk_writer_free(&jw);
    zk_writer_free(&mw);
    zk_doc_free(&d1);
    zk_doc_free(&d2);
}

/* (NULL, 0) is an empty string, key or binary, as it is for the JSON
   writer: no memcpy from NULL (UBSan stops on it). Runs last: a failure
   here aborts the program. */
TEST(write_empty_from_null_pointer) {
    zk_writer jw;
    zk_writer_init(&jw, NULL, 0);
    zk_write_array(&jw);
    zk_write_str_n(&jw, NULL, 0);
    zk_write_binary(&jw, NULL, 0);
    zk_write_object(&jw);
    zk_write_key_n(&jw, NULL, 0);
    zk_write_null(&jw);
    zk_write_end(&jw);
    zk_write_end(&jw);
    CHECK_STR(zk_writer_result(&jw), "[\"\",\"\",{\"\":null}]");
    zk_writer_free(&jw);
    msgpack_writer(&w);
    WRITES((zk_write_array(&w), zk_write_str_n(&w, NULL, 0), zk_write_binary(&w, NULL, 0),
            zk_write_object(&w), zk_write_key_n(&w, NULL, 0), zk_write_null(&w), zk_write_end(&w),
            zk_write_end(&w)),
           "93 a0 c4 00 81 a0 c0");
    zk_writer_free(&w);
}

#define RUN_PYTHON(name)                                                      \
    do {                                                                      \
        if (!python_msgpack_missing(#name)) RUN(name);                        \
    } while (0)

int main(void) {
    RUN(decode_nil_and_bool);
    RUN(decode_every_fixint);
    RUN(decode_integers_at_their_edges);
    RUN(decode_floats);
    RUN(decode_strings_every_length_form);
    RUN(decode_binary_every_length_form);
    RUN(decode_arrays_every_length_form);
    RUN(decode_maps_every_length_form);
    RUN(decode_nested_with_paths_get_at);
    RUN(refused_byte_c1);
    RUN(refused_ext_and_fixext);
    RUN(refused_nan_and_infinity);
    RUN(refused_keys_that_are_not_strings);
    RUN(refused_str_not_utf8);
    RUN(refused_truncated);
    RUN(refused_trailing_data);
    RUN(refused_empty_input);
    RUN(refused_huge_lengths_without_a_large_allocation);
    RUN(depth_limit);
    RUN(depth_limit_custom);
    RUN(depth_100000_refused_without_recursion);
    RUN(node_limit);
    RUN(node_limit_lowered_on_a_reused_doc);
    RUN(one_doc_both_codecs);
    RUN(guard_page_every_prefix);
    RUN(out_of_memory);
    RUN(write_ints_at_every_boundary);
    RUN(write_scalars);
    RUN(write_string_and_binary_lengths);
    RUN(write_container_sizes);
    RUN(write_nested_headers_fitted_on_close);
    RUN(write_refusals);
    RUN(set_codec_rules);
    RUN(write_fixed_buffer_every_size);
    RUN(write_growable_max);
    RUN(binary_in_json_is_base64);
    RUN(write_value_json_doc_to_msgpack);
    RUN(write_value_msgpack_doc_to_json);
    RUN(round_trip_json_msgpack_json);
    RUN(round_trip_random_msgpack_writer);
    RUN_PYTHON(interop_we_decode_what_python_packs);
    RUN_PYTHON(interop_python_decodes_what_we_pack);
    RUN(write_empty_from_null_pointer);
    zk_doc_free(&doc);
    free(doc_buf);
    if (skipped) {
        printf("%d passed, %d failed, %d skipped\n", test__passed, test__failed, skipped);
        return test__failed ? 1 : 0;
    }
    return test_summary();
}
