/* Unit tests for the payload layer: zk_json_parse and the zk_value
   accessors, the zk_writer, round trips through both, and a cross-check
   against an independent JSON implementation (Python's json module). Every
   parser input of the tables is also run, with each of its prefixes,
   against an unmapped page. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, mkstemp, popen under -std=c99 */
#include <stdlib.h>

/* The library's allocator, made to fail on demand. */
static int alloc_fails;
static void *test_malloc(size_t n) { return alloc_fails ? NULL : malloc(n); }
static void *test_realloc(void *p, size_t n) { return alloc_fails ? NULL : realloc(p, n); }
#define ZK_MALLOC(n) test_malloc(n)
#define ZK_REALLOC(p, n) test_realloc(p, n)
#define ZK_FREE(p) free(p)

#define ZOCKET_IMPLEMENTATION
#include "zocket.h"
#include "test.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <time.h>

#define IN(lit) lit, sizeof(lit) - 1

/* ---- helpers ---- */

/* One document reused by most tests; its input is copied to a heap buffer
   (the parser decodes escapes in place) that lives until the next parse. */
static zk_doc doc;
static char *doc_buf;

static int parse_n(const char *s, size_t n) {
    free(doc_buf);
    doc_buf = (char *)malloc(n ? n : 1);
    if (n) memcpy(doc_buf, s, n);
    return zk_json_parse(&doc, doc_buf, n);
}
static int parse(const char *s) { return parse_n(s, strlen(s)); }
static zk_value root(void) { return zk_doc_root(&doc); }
static zk_value at_path(const char *p) { return zk_value_path(root(), p); }

/* Prints up to 100 bytes of s with non-printable bytes escaped. */
static void show(const char *s, size_t n) {
    size_t i;
    putchar('`');
    for (i = 0; i < n && i < 100; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f) putchar(c);
        else printf("\\x%02X", c);
    }
    if (n > 100) printf("...(%zu bytes)", n);
    putchar('`');
}

/* A growing byte string for generated inputs. */
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
static void text_rep(text *t, const char *s, size_t times) {
    size_t n = strlen(s);
    while (times--) text_add(t, s, n);
}
static void text_free(text *t) {
    free(t->p);
    t->p = NULL;
    t->len = t->cap = 0;
}

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

static int view_eq(zk_str a, zk_str b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* Deep equality of two values: same types, ints equal, doubles with the
   same bits, same string bytes, same elements / members (keys and order). */
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

/* A seedable generator (splitmix64): every run sees the same inputs. */
static uint64_t rng_state;
static uint64_t rnd(void) {
    uint64_t z = (rng_state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* ---- invalid-input tables (also used by the guard-page test) ---- */

/* An input, and the range [lo, hi] where error_at may point: from the
   start of the offending token to the first byte that cannot continue a
   valid text (hi -1: the input's length). */
typedef struct bad_case {
    const char *s;
    size_t n;
    int lo, hi;
} bad_case;
#define BAD(lit, lo, hi) { lit, sizeof(lit) - 1, lo, hi }
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const bad_case bad_commas[] = {
    BAD("[1,]", 2, 3),
    BAD("[1,2,]", 4, 5),
    BAD("[1,2,,]", 4, 5),
    BAD("{\"a\":1,}", 6, 7),
    BAD("{\"a\":1,,\"b\":2}", 6, 7),
    BAD("{\"a\":[],}", 7, 8),
    BAD("[[],]", 3, 4),
    BAD("[,1]", 1, 1),
    BAD("[,]", 1, 1),
    BAD("{,}", 1, 1),
    BAD("[1,,2]", 2, 3),
    BAD("[1 , ]", 3, 5),
};

static const bad_case bad_numbers[] = {
    BAD("01", 0, 1),
    BAD("[01]", 1, 2),
    BAD("-01", 0, 2),
    BAD("00", 0, 1),
    BAD("-00", 0, 2),
    BAD("00.5", 0, 1),
    BAD("00e0", 0, 1),
    BAD("+1", 0, 0),
    BAD("[+1]", 1, 1),
    BAD("-+1", 0, 1),
    BAD(".5", 0, 0),
    BAD("[.5]", 1, 1),
    BAD("-.5", 0, 1),
    BAD(".", 0, 0),
    BAD("1.", 0, 2),
    BAD("[1.]", 1, 3),
    BAD("1.e3", 0, 2),
    BAD("0.e1", 0, 2),
    BAD("2.e+3", 0, 2),
    BAD("1.5.", 0, 3),
    BAD("1..2", 0, 2),
    BAD("1e", 0, 2),
    BAD("0e", 0, 2),
    BAD("1e+", 0, 3),
    BAD("1e-", 0, 3),
    BAD("1E", 0, 2),
    BAD("[1e]", 1, 3),
    BAD("1e+-2", 0, 3),
    BAD("1eE2", 0, 2),
    BAD("1e1.5", 0, 3),
    BAD("1e\xC3\xA9", 0, 2),
    BAD("-", 0, 1),
    BAD("[-]", 1, 2),
    BAD("- 1", 0, 1),
    BAD("--1", 0, 1),
    BAD("-a", 0, 1),
    BAD("0x1", 0, 1),
    BAD("0x42", 0, 1),
    BAD("0X1", 0, 1),
    BAD("[0xF]", 1, 2),
    BAD("1 000", 1, 2),
    BAD("1_000", 0, 1),
    BAD("\xEF\xBC\x91", 0, 0), /* U+FF11 FULLWIDTH DIGIT ONE */
    BAD("NaN", 0, 0),
    BAD("nan", 0, 1),
    BAD("-NaN", 0, 1),
    BAD("[NaN]", 1, 1),
    BAD("Infinity", 0, 0),
    BAD("-Infinity", 0, 1),
    BAD("[Infinity]", 1, 1),
    BAD("inf", 0, 0),
    BAD("Inf", 0, 0),
};

static const bad_case bad_literals[] = {
    BAD("t", 0, 1),
    BAD("tru", 0, 3),
    BAD("n", 0, 1),
    BAD("nul", 0, 3),
    BAD("f", 0, 1),
    BAD("fals", 0, 4),
    BAD("True", 0, 0),
    BAD("NULL", 0, 0),
    BAD("FALSE", 0, 0),
    BAD("nulll", 0, 4),
    BAD("truee", 0, 4),
    BAD("falsy", 0, 4),
    BAD("trux", 0, 3),
    BAD("tr ue", 0, 2),
    BAD("nul1", 0, 3),
    BAD("null1", 0, 4),
    BAD("truefalse", 0, 4),
    BAD("[tru]", 1, 4),
    BAD("[true1]", 1, 5),
    BAD("{\"a\":nul}", 5, 8),
    BAD("undefined", 0, 0),
};

static const bad_case bad_syntax[] = { /* quotes, keys, comments */
    BAD("'a'", 0, 0),
    BAD("['a']", 1, 1),
    BAD("{'a':1}", 1, 1),
    BAD("{\"a\":'b'}", 5, 5),
    BAD("{a:1}", 1, 1),
    BAD("{a:\"b\"}", 1, 1),
    BAD("{1:1}", 1, 1),
    BAD("{null:1}", 1, 1),
    BAD("{[]:1}", 1, 1),
    BAD("{{}:1}", 1, 1),
    BAD("[1]//c", 3, 3),
    BAD("[1]/*c*/", 3, 3),
    BAD("/*c*/1", 0, 0),
    BAD("[1,/*c*/2]", 3, 3),
    BAD("//\n1", 0, 0),
    BAD("{\"a\":1/**/}", 6, 6),
    BAD("#1", 0, 0),
    BAD("[1]#", 3, 3),
};

static const bad_case bad_escapes[] = {
    BAD("\"\\x41\"", 0, 2),
    BAD("\"\\a\"", 0, 2),
    BAD("\"\\'\"", 0, 2),
    BAD("\"\\0\"", 0, 2),
    BAD("\"\\U0041\"", 0, 2),
    BAD("\"\\ \"", 0, 2),
    BAD("\"\\\n\"", 0, 2),
    BAD("\"\\\xC3\xA9\"", 0, 2),
    BAD("\"\\u12\"", 0, 5),
    BAD("\"\\u\"", 0, 3),
    BAD("\"\\u004\"", 0, 6),
    BAD("\"\\uZZZZ\"", 0, 3),
    BAD("\"\\u00G0\"", 0, 5),
    BAD("\"\\u 123\"", 0, 3),
    BAD("\"\\u-123\"", 0, 3),
    BAD("\"\\", 0, 2),
    BAD("\"\\u00", 0, 5),
    BAD("[\"\\x\"]", 1, 3),
    BAD("{\"\\q\":1}", 1, 3),
};

static const bad_case bad_surrogates[] = {
    BAD("\"\\ud800\"", 0, 7),
    BAD("\"\\udc00\"", 0, 7),
    BAD("\"\\uDFFF\"", 0, 7),
    BAD("\"\\ud800\\u0041\"", 0, 13),
    BAD("\"\\ud800x\"", 0, 7),
    BAD("\"\\udbff\\udbff\"", 0, 13),
    BAD("\"\\ude00\\ud83d\"", 0, 13),
    BAD("\"\\ud800\\n\"", 0, 8),
    BAD("\"\\ud800\\\"", 0, 8),
    BAD("\"\\ud800\\u\"", 0, 10),
    BAD("\"\\ud800\\uZZZZ\"", 0, 9),
    BAD("\"a\\ud83d\"", 0, 8),
    BAD("\"\\ud800", 0, 7),
    BAD("{\"\\ud800\":1}", 1, 8),
};

static const bad_case bad_utf8[] = {
    BAD("\"\xC0\x80\"", 0, -1), /* overlong NUL */
    BAD("\"\xC1\xBF\"", 0, -1),
    BAD("\"\xE0\x80\x80\"", 0, -1),
    BAD("\"\xE0\x9F\xBF\"", 0, -1),
    BAD("\"\xF0\x80\x80\x80\"", 0, -1),
    BAD("\"\xF0\x8F\xBF\xBF\"", 0, -1),
    BAD("\"\xED\xA0\x80\"", 0, -1), /* U+D800 encoded */
    BAD("\"\xED\xBF\xBF\"", 0, -1), /* U+DFFF encoded */
    BAD("\"\xED\xA0\xBD\xED\xB8\x80\"", 0, -1), /* CESU-8 pair */
    BAD("\"\xE2\x82\"", 0, -1),                 /* truncated */
    BAD("\"\xF0\x9F\x98\"", 0, -1),
    BAD("\"\xC3\"", 0, -1),
    BAD("\"\xC3\x28\"", 0, -1),
    BAD("\"\x80\"", 0, -1), /* lone continuation bytes */
    BAD("\"\xBF\"", 0, -1),
    BAD("\"a\200b\"", 0, -1),
    BAD("\"\xF4\x90\x80\x80\"", 0, -1), /* above U+10FFFF */
    BAD("\"\xF5\x80\x80\x80\"", 0, -1),
    BAD("\"\xF8\x88\x80\x80\x80\"", 0, -1),
    BAD("\"\xFE\"", 0, -1),
    BAD("\"\xFF\"", 0, -1),
    BAD("{\"\xC0\x80\":1}", 1, -1),
    BAD("[\"\xE2\x82\"]", 1, -1),
    BAD("\xC3\xA9", 0, 0), /* UTF-8 outside strings */
    BAD("[\xC3\xA9]", 1, 1),
};

static const bad_case bad_unterminated[] = {
    BAD("\"", 0, 1),
    BAD("\"abc", 0, 4),
    BAD("\"\\u0041", 0, 7),
    BAD("[", 0, 1),
    BAD("[1", 0, 2),
    BAD("[1,", 0, 3),
    BAD("[[]", 0, 3),
    BAD("[\"a", 0, 3),
    BAD("{", 0, 1),
    BAD("{\"a", 0, 3),
    BAD("{\"a\"", 0, 4),
    BAD("{\"a\":", 0, 5),
    BAD("{\"a\":1", 0, 6),
    BAD("{\"a\":1,\"b\"", 0, 10),
    BAD("[1,[2,{\"a\":[3", 0, 13),
    BAD("[{", 0, 2),
};

static const bad_case bad_structure[] = {
    BAD("{\"a\" 1}", 4, 5),
    BAD("{\"a\"::1}", 5, 5),
    BAD("{\"a\",1}", 4, 4),
    BAD("{\"a\"}", 4, 4),
    BAD("{\"a\":}", 5, 5),
    BAD("{\"a\":1,\"b\"}", 10, 10),
    BAD("{\"a\":1 \"b\":2}", 6, 7),
    BAD("[1:2]", 2, 2),
    BAD("[1 2]", 2, 3),
    BAD("[\"a\" \"b\"]", 4, 5),
    BAD("]", 0, 0),
    BAD("}", 0, 0),
    BAD("[}", 1, 1),
    BAD("{]", 1, 1),
    BAD("[1}", 2, 2),
    BAD("{\"a\":1]", 6, 6),
    BAD(":", 0, 0),
    BAD(",", 0, 0),
    BAD("<>", 0, 0),
};

static const bad_case bad_top_level[] = {
    BAD("1 2", 1, 2),
    BAD("0 0", 1, 2),
    BAD("[] []", 2, 3),
    BAD("{}{}", 2, 2),
    BAD("\"a\"\"b\"", 3, 3),
    BAD("\"a\" x", 3, 4),
    BAD("1,2", 1, 1),
    BAD("[1],", 3, 3),
    BAD("[1]]", 3, 3),
    BAD("{}}", 2, 2),
    BAD("null null", 4, 5),
    BAD("true false", 4, 5),
};

static const bad_case bad_blank[] = { /* empty, white space, NUL bytes */
    BAD("", 0, 0),
    BAD(" ", 0, 1),
    BAD("\n", 0, 1),
    BAD("\t\r\n ", 0, 4),
    BAD("\f1", 0, 0),
    BAD("1\f", 1, 1),
    BAD("[1,\f2]", 3, 3),
    BAD("\v1", 0, 0),
    BAD("\xC2\xA0" "1", 0, 0), /* U+00A0 NO-BREAK SPACE */
    BAD("[\xC2\xA0" "1]", 1, 1),
    BAD("\xE2\x81\xA0" "1", 0, 0), /* U+2060 WORD JOINER */
    BAD("\xE3\x80\x80" "1", 0, 0), /* U+3000 IDEOGRAPHIC SPACE */
    BAD("1\xC2\x85", 1, 1),        /* U+0085 NEXT LINE */
    BAD("\xEF\xBB\xBF", 0, 3),     /* a byte order mark and nothing else */
    BAD("\0", 0, 0),
    BAD("1\0", 1, 1),
    BAD("[1,\0 2]", 3, 3),
    BAD("\0[]", 0, 0),
    BAD("[]\0", 2, 2),
    BAD(" \0", 1, 1),
    BAD("[\0]", 1, 1),
    BAD("{\"a\"\0:1}", 4, 4),
    BAD("tr\0e", 0, 2),
    BAD("nul\0", 0, 3),
    BAD("1\0 2", 1, 1),
};

typedef struct bad_table {
    const char *name;
    const bad_case *cases;
    size_t count;
} bad_table;
#define TABLE(t) { #t, t, COUNT(t) }
static const bad_table bad_tables[] = {
    TABLE(bad_commas),    TABLE(bad_numbers),      TABLE(bad_literals),
    TABLE(bad_syntax),    TABLE(bad_escapes),      TABLE(bad_surrogates),
    TABLE(bad_utf8),      TABLE(bad_unterminated), TABLE(bad_structure),
    TABLE(bad_top_level), TABLE(bad_blank),
};

/* Parses c and checks ZK_EPARSE, the error text and error_at's range, and
   that the root is NONE. Prints the input when a check fails. */
static void check_bad(const bad_case *c) {
    int before = test__failed_checks;
    int rc = parse_n(c->s, c->n);
    size_t hi = c->hi < 0 ? c->n : (size_t)c->hi;
    CHECK_EQ_INT(rc, ZK_EPARSE);
    CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_NONE);
    if (rc == ZK_EPARSE) {
        CHECK(doc.error != NULL && doc.error[0] != '\0');
        CHECK(doc.error_at >= (size_t)c->lo && doc.error_at <= hi);
    }
    if (test__failed_checks != before) {
        printf("    input ");
        show(c->s, c->n);
        printf(": rc %s, error_at %zu (%s); expected ZK_EPARSE at %d..%zu\n", zk_err_name(rc),
               doc.error_at, doc.error ? doc.error : "no text", c->lo, hi);
    }
}

static void check_bad_table(const bad_case *cases, size_t count) {
    size_t i;
    for (i = 0; i < count; i++) check_bad(&cases[i]);
}

/* ---- valid-input table (also used by the guard-page test) ---- */

typedef struct good_case {
    const char *s;
    size_t n;
} good_case;
#define GOOD(lit) { lit, sizeof(lit) - 1 }

static const good_case good_docs[] = {
    GOOD("null"), GOOD("true"), GOOD("false"), GOOD("0"), GOOD("-0"), GOOD("1"), GOOD("-1"),
    GOOD("12345"), GOOD("1.5"), GOOD("-0.0"), GOOD("1e2"), GOOD("1E+2"), GOOD("1e-2"),
    GOOD("0e0"), GOOD("-0.5e-3"), GOOD("9223372036854775807"), GOOD("-9223372036854775808"),
    GOOD("9223372036854775808"), GOOD("1.7976931348623157e308"), GOOD("5e-324"),
    GOOD("\"\""), GOOD("\"abc\""), GOOD("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\""),
    GOOD("\"\\u0000\""), GOOD("\"a\\u0000b\""), GOOD("\"\\u00e9\\u20AC\\uFFFF\""),
    GOOD("\"\\ud83d\\ude00\""), GOOD("\"\\uD834\\uDd1E\""), GOOD("\"\\udbff\\udfff\""),
    GOOD("\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF\xEF\xBF\xBF\x7F\""),
    GOOD("\"\xE2\x80\xA8\xE2\x80\xA9\""), GOOD("[]"), GOOD("{}"), GOOD("[[]]"), GOOD("[{}]"),
    GOOD("{\"\":{}}"), GOOD("[1,2,3]"), GOOD("[null,true,false]"), GOOD("{\"a\":1,\"a\":2}"),
    GOOD("{\"a\":{\"b\":[0,1,{\"c\":\"x\"}]},\"arr\":[[5,6]]}"),
    GOOD(" \t\r\n[ \t\r\n1 \t\r\n, \t\r\n{ \t\r\n\"k\" \t\r\n: \t\r\nnull \t\r\n} \t\r\n] \t\r\n"),
    GOOD("[-1.5e+2,true,false,null,\"x y\",{},[]]"), GOOD("\"\x7F\""), GOOD("[\"\\/\"]"),
    GOOD("[[[[[[[[[[1]]]]]]]]]]"), GOOD("{\"a\":{\"a\":{\"a\":{\"a\":null}}}}"),
    GOOD("[0.1,1e-7,100e-2,123.456E+2]"), GOOD("{\"\\u0000\":\"\\u0000\"}"),
};

/* ======================= reader: valid input ========================= */

TEST(fresh_doc_root_is_none) {
    zk_doc d;
    zk_value r;
    memset(&d, 0xAB, sizeof d);
    zk_doc_init(&d);
    r = zk_doc_root(&d);
    CHECK_EQ_INT(zk_value_type(r), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_len(r), 0);
    CHECK_EQ_INT(zk_value_type(zk_value_get(r, "a")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(zk_value_at(r, 0)), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(zk_value_path(r, "a.b[0]")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(zk_value_first(r)), ZK_TYPE_NONE);
    CHECK(zk_value_str(r).ptr == NULL && zk_value_str(r).len == 0);
    CHECK_EQ_INT(zk_value_int(r, 7), 7);
    zk_doc_free(&d);
    {
        zk_doc z = {0};
        CHECK_EQ_INT(zk_value_type(zk_doc_root(&z)), ZK_TYPE_NONE);
        zk_doc_free(&z);
    }
}

TEST(every_type_as_root) {
    CHECK_EQ_INT(parse("null"), ZK_OK);
    CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_NULL);
    CHECK_EQ_INT(parse("true"), ZK_OK);
    CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_BOOL);
    CHECK_EQ_INT(zk_value_bool(root(), -1), 1);
    CHECK_EQ_INT(parse("false"), ZK_OK);
    CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_BOOL);
    CHECK_EQ_INT(zk_value_bool(root(), -1), 0);
    CHECK_EQ_INT(parse("42"), ZK_OK);
    CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_INT);
    CHECK_EQ_INT(zk_value_int(root(), 0), 42);
    CHECK_EQ_INT(parse("-2.5"), ZK_OK);
    CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_DOUBLE);
    CHECK(zk_value_double(root(), 0) == -2.5);
    CHECK_EQ_INT(parse("\"hi\""), ZK_OK);
    CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_STRING);
    CHECK_STR(zk_value_str(root()), "hi");
    CHECK_EQ_INT(zk_value_len(root()), 2);
    CHECK_EQ_INT(parse("[]"), ZK_OK);
    CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_ARRAY);
    CHECK_EQ_INT(zk_value_len(root()), 0);
    CHECK_EQ_INT(zk_value_type(zk_value_first(root())), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(zk_value_at(root(), 0)), ZK_TYPE_NONE);
    CHECK_EQ_INT(parse("{}"), ZK_OK);
    CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_OBJECT);
    CHECK_EQ_INT(zk_value_len(root()), 0);
    CHECK_EQ_INT(zk_value_type(zk_value_first(root())), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(zk_value_get(root(), "")), ZK_TYPE_NONE);
    /* the whole table parses */
    {
        size_t i;
        for (i = 0; i < COUNT(good_docs); i++) {
            int rc = parse_n(good_docs[i].s, good_docs[i].n);
            CHECK_EQ_INT(rc, ZK_OK);
            CHECK(zk_value_type(root()) != ZK_TYPE_NONE);
            if (rc != ZK_OK) {
                printf("    input ");
                show(good_docs[i].s, good_docs[i].n);
                printf(": %s at %zu\n", doc.error ? doc.error : "?", doc.error_at);
            }
        }
    }
}

TEST(type_names) {
    CHECK(strcmp(zk_type_name(ZK_TYPE_NONE), "none") == 0);
    CHECK(strcmp(zk_type_name(ZK_TYPE_NULL), "null") == 0);
    CHECK(strcmp(zk_type_name(ZK_TYPE_BOOL), "bool") == 0);
    CHECK(strcmp(zk_type_name(ZK_TYPE_INT), "int") == 0);
    CHECK(strcmp(zk_type_name(ZK_TYPE_DOUBLE), "double") == 0);
    CHECK(strcmp(zk_type_name(ZK_TYPE_STRING), "string") == 0);
    CHECK(strcmp(zk_type_name(ZK_TYPE_BINARY), "binary") == 0);
    CHECK(strcmp(zk_type_name(ZK_TYPE_ARRAY), "array") == 0);
    CHECK(strcmp(zk_type_name(ZK_TYPE_OBJECT), "object") == 0);
    /* not a type: some text, not a crash */
    CHECK(zk_type_name(ZK_TYPE_OBJECT + 1) != NULL);
    CHECK(zk_type_name(-1) != NULL);
    CHECK(zk_type_name(1000) != NULL);
}

TEST(nesting) {
    zk_value a, b;
    CHECK_EQ_INT(parse("{\"a\":[1,{\"b\":[[],{}]},\"c\"],\"d\":{\"e\":{\"f\":null}},\"g\":[[[7]]]}"),
                 ZK_OK);
    CHECK_EQ_INT(zk_value_len(root()), 3);
    a = zk_value_get(root(), "a");
    CHECK_EQ_INT(zk_value_type(a), ZK_TYPE_ARRAY);
    CHECK_EQ_INT(zk_value_len(a), 3);
    CHECK_EQ_INT(zk_value_int(zk_value_at(a, 0), 0), 1);
    b = zk_value_get(zk_value_at(a, 1), "b");
    CHECK_EQ_INT(zk_value_type(b), ZK_TYPE_ARRAY);
    CHECK_EQ_INT(zk_value_len(b), 2);
    CHECK_EQ_INT(zk_value_type(zk_value_at(b, 0)), ZK_TYPE_ARRAY);
    CHECK_EQ_INT(zk_value_type(zk_value_at(b, 1)), ZK_TYPE_OBJECT);
    CHECK_STR(zk_value_str(zk_value_at(a, 2)), "c");
    CHECK_EQ_INT(zk_value_type(zk_value_get(zk_value_get(zk_value_get(root(), "d"), "e"), "f")),
                 ZK_TYPE_NULL);
    CHECK_EQ_INT(zk_value_int(at_path("g[0][0][0]"), 0), 7);
    /* element access skips whole subtrees */
    CHECK_EQ_INT(parse("[[1,2,[3,[4]]],{\"a\":[4,{\"b\":5}]},5,{},[],6]"), ZK_OK);
    CHECK_EQ_INT(zk_value_len(root()), 6);
    CHECK_EQ_INT(zk_value_int(zk_value_at(root(), 2), 0), 5);
    CHECK_EQ_INT(zk_value_type(zk_value_at(root(), 3)), ZK_TYPE_OBJECT);
    CHECK_EQ_INT(zk_value_type(zk_value_at(root(), 4)), ZK_TYPE_ARRAY);
    CHECK_EQ_INT(zk_value_int(zk_value_at(root(), 5), 0), 6);
    CHECK_EQ_INT(zk_value_type(zk_value_at(root(), 6)), ZK_TYPE_NONE);
}

/* The tree of base with white space inserted: at a token boundary any of the
   four is allowed and changes nothing; inside a string a space is content
   and the rest are raw control characters (refused); inside a literal or
   number nothing is allowed; no other white space is allowed anywhere. */
TEST(white_space_everywhere_allowed_and_nowhere_else) {
    static const char base[] =
        "{\"a\":[-1.5e+2,true,false,null,\"x y\",{},[],0,12],\"bc\":{\"d\":\"e\"},\"f\":-7}";
    static const char ws[] = " \t\r\n";
    size_t n = sizeof base - 1, i, k, quotes;
    zk_doc orig = {0};
    char *orig_buf = (char *)malloc(n);
    text all = {0};
    memcpy(orig_buf, base, n);
    CHECK_EQ_INT(zk_json_parse(&orig, orig_buf, n), ZK_OK);
    for (i = 0, quotes = 0; i <= n; quotes += (i < n && base[i] == '"'), i++) {
        int in_string = quotes % 2 == 1;
        int in_token = !in_string && i > 0 && i < n &&
                       (strchr("0123456789+-.eEtruefalsn", base[i - 1]) != NULL) &&
                       (strchr("0123456789+-.eEtruefalsn", base[i]) != NULL);
        for (k = 0; k < 6; k++) {
            /* the four white space characters, then form feed and NBSP */
            char ins[3] = {0, 0, 0};
            size_t ins_n;
            text t = {0};
            int rc, want;
            if (k < 4) ins[0] = ws[k];
            else if (k == 4) ins[0] = '\f';
            else memcpy(ins, "\xC2\xA0", 2);
            ins_n = strlen(ins);
            text_add(&t, base, i);
            text_add(&t, ins, ins_n);
            text_add(&t, base + i, n - i);
            rc = parse_n(t.p, t.len);
            if (in_string) want = (k == 0 || k == 5) ? ZK_OK : ZK_EPARSE;
            else if (in_token) want = ZK_EPARSE;
            else want = k < 4 ? ZK_OK : ZK_EPARSE;
            CHECK_EQ_INT(rc, want);
            if (rc == ZK_OK && !in_string) CHECK(same_value(root(), zk_doc_root(&orig)));
            if (rc == ZK_EPARSE && !in_string && !in_token) CHECK_EQ_INT(doc.error_at, i);
            if (rc != want) {
                printf("    inserted %zu byte(s) at %zu: ", ins_n, i);
                show(t.p, t.len);
                printf("\n");
            }
            text_free(&t);
        }
        /* all four at once at every boundary */
        if (!in_string && !in_token) text_str(&all, "\t\r\n ");
        if (i < n) text_add(&all, base + i, 1);
    }
    CHECK_EQ_INT(parse_n(all.p, all.len), ZK_OK);
    CHECK(same_value(root(), zk_doc_root(&orig)));
    text_free(&all);
    zk_doc_free(&orig);
    free(orig_buf);
}

typedef struct num_case {
    const char *s;
    int type;
    int64_t i;
    double d;
} num_case;
#define NI(x) { #x, ZK_TYPE_INT, x, 0 }
#define ND(x) { #x, ZK_TYPE_DOUBLE, 0, x }

TEST(numbers) {
    static const num_case nums[] = {
        NI(0), NI(1), NI(-1), NI(7), NI(-42), NI(123456789012), NI(9007199254740993),
        {"-0", ZK_TYPE_INT, 0, 0},
        {"9223372036854775807", ZK_TYPE_INT, INT64_MAX, 0},
        {"-9223372036854775808", ZK_TYPE_INT, INT64_MIN, 0},
        {"-9223372036854775807", ZK_TYPE_INT, -INT64_MAX, 0},
        {"9223372036854775808", ZK_TYPE_DOUBLE, 0, 9223372036854775808.0},
        {"-9223372036854775809", ZK_TYPE_DOUBLE, 0, -9223372036854775809.0},
        {"10000000000000000000", ZK_TYPE_DOUBLE, 0, 1e19},
        {"18446744073709551616", ZK_TYPE_DOUBLE, 0, 18446744073709551616.0},
        {"123456789012345678901234567890", ZK_TYPE_DOUBLE, 0, 123456789012345678901234567890.0},
        ND(1.0), ND(1e2), ND(1E2), ND(1e+2), ND(1e-2), ND(100e-2), ND(0.1), ND(0.5), ND(-1.5),
        ND(1e-7), ND(-0.0), ND(0e0), ND(0.0), ND(-0e-0), ND(0.0e+0), ND(123.456E+2),
        ND(1.7976931348623157e308), ND(-1.7976931348623157e308), ND(5e-324),
        ND(4.9406564584124654e-324), ND(2.2250738585072014e-308), ND(2.2250738585072011e-308),
        ND(2.2250738585072009e-308), ND(1e23), ND(8.98846567431158e307), ND(9007199254740993.0),
        ND(1.00000000000000011102230246251565404236316680908203125),
        ND(1.00000000000000011102230246251565404236316680908203126),
        ND(3.14159265358979323846264338327950288419716939937510),
        ND(0.0000000000000000000000000000001e31), ND(100000000000000000000000000000e-29),
        ND(1e0000000000000000000002), ND(9223372036854775807.0), ND(2.4703282292062328e-324),
    };
    size_t i;
    for (i = 0; i < COUNT(nums); i++) {
        int before = test__failed_checks;
        int rc = parse(nums[i].s);
        CHECK_EQ_INT(rc, ZK_OK);
        CHECK_EQ_INT(zk_value_type(root()), nums[i].type);
        if (nums[i].type == ZK_TYPE_INT) {
            CHECK_EQ_INT(zk_value_int(root(), 99), nums[i].i);
            CHECK(zk_value_double(root(), 99) == (double)nums[i].i);
        } else {
            CHECK(double_bits(zk_value_double(root(), 99)) == double_bits(nums[i].d));
        }
        if (test__failed_checks != before)
            printf("    input %s: rc %d type %s int %lld double %.17g\n", nums[i].s, rc,
                   zk_type_name(zk_value_type(root())), (long long)zk_value_int(root(), 0),
                   zk_value_double(root(), 0));
    }
    /* numbers as elements and members, ended by each possible follower */
    CHECK_EQ_INT(parse("[0,-0,1.5,-1e3,2E-1,0.0 ,7\t,8\n]"), ZK_OK);
    CHECK_EQ_INT(zk_value_len(root()), 8);
    CHECK_EQ_INT(zk_value_int(zk_value_at(root(), 7), 0), 8);
    CHECK(zk_value_double(zk_value_at(root(), 4), 0) == 2E-1);
    CHECK_EQ_INT(parse("{\"a\":-12,\"b\":3e1}"), ZK_OK);
    CHECK_EQ_INT(zk_value_int(zk_value_get(root(), "a"), 0), -12);
    CHECK(zk_value_double(zk_value_get(root(), "b"), 0) == 30.0);
}

TEST(getters_convert_and_default) {
    zk_value v;
    CHECK_EQ_INT(parse("[3,3.0,3.5,-0.0,1e300,9223372036854775807.0,-9223372036854775808.0,"
                       "9223372036854774784.0,true,\"3\",null,[],{},-1e19,1e-320,false]"),
                 ZK_OK);
    v = zk_doc_root(&doc);
    CHECK_EQ_INT(zk_value_int(zk_value_at(v, 0), 9), 3);
    CHECK(zk_value_double(zk_value_at(v, 0), 9) == 3.0);          /* an int is a double */
    CHECK_EQ_INT(zk_value_type(zk_value_at(v, 1)), ZK_TYPE_DOUBLE);
    CHECK_EQ_INT(zk_value_int(zk_value_at(v, 1), 9), 3);          /* integral double */
    CHECK_EQ_INT(zk_value_int(zk_value_at(v, 2), 9), 9);          /* 3.5: not integral */
    CHECK(zk_value_double(zk_value_at(v, 2), 9) == 3.5);
    CHECK_EQ_INT(zk_value_int(zk_value_at(v, 3), 9), 0);          /* -0.0 */
    CHECK_EQ_INT(zk_value_int(zk_value_at(v, 4), 9), 9);          /* 1e300 does not fit */
    CHECK_EQ_INT(zk_value_int(zk_value_at(v, 5), 9), 9);          /* 2^63 does not fit */
    CHECK_EQ_INT(zk_value_int(zk_value_at(v, 6), 9), INT64_MIN);  /* -2^63 fits */
    CHECK_EQ_INT(zk_value_int(zk_value_at(v, 7), 9), INT64_C(9223372036854774784));
    CHECK_EQ_INT(zk_value_int(zk_value_at(v, 8), 9), 9);          /* true is no int */
    CHECK(zk_value_double(zk_value_at(v, 8), 9) == 9);
    CHECK_EQ_INT(zk_value_bool(zk_value_at(v, 8), 9), 1);
    CHECK_EQ_INT(zk_value_bool(zk_value_at(v, 15), 9), 0);
    CHECK_EQ_INT(zk_value_int(zk_value_at(v, 9), 9), 9);          /* "3" is no int */
    CHECK(zk_value_double(zk_value_at(v, 9), 9) == 9);
    CHECK_EQ_INT(zk_value_bool(zk_value_at(v, 9), 9), 9);
    CHECK_EQ_INT(zk_value_int(zk_value_at(v, 10), 9), 9);         /* null */
    CHECK_EQ_INT(zk_value_bool(zk_value_at(v, 10), 9), 9);
    CHECK_EQ_INT(zk_value_bool(zk_value_at(v, 0), 9), 9);         /* 3 is no bool */
    CHECK_EQ_INT(zk_value_int(zk_value_at(v, 11), 9), 9);         /* [] */
    CHECK_EQ_INT(zk_value_int(zk_value_at(v, 12), 9), 9);         /* {} */
    CHECK_EQ_INT(zk_value_int(zk_value_at(v, 13), 9), 9);         /* -1e19 */
    CHECK_EQ_INT(zk_value_int(zk_value_at(v, 14), 9), 9);         /* 1e-320 */
    CHECK_EQ_INT(zk_value_int(zk_value_at(v, 16), 9), 9);         /* NONE */
    CHECK(zk_value_double(zk_value_at(v, 16), 2.5) == 2.5);
    /* strings only for strings */
    CHECK(zk_value_str(zk_value_at(v, 0)).ptr == NULL && zk_value_str(zk_value_at(v, 0)).len == 0);
    CHECK(zk_value_str(zk_value_at(v, 10)).ptr == NULL);
    CHECK(zk_value_str(zk_value_at(v, 11)).ptr == NULL);
    CHECK(zk_value_str(zk_value_at(v, 12)).ptr == NULL);
    CHECK_STR(zk_value_str(zk_value_at(v, 9)), "3");
    /* lengths: containers and strings, else 0 */
    CHECK_EQ_INT(zk_value_len(v), 16);
    CHECK_EQ_INT(zk_value_len(zk_value_at(v, 0)), 0);
    CHECK_EQ_INT(zk_value_len(zk_value_at(v, 8)), 0);
    CHECK_EQ_INT(zk_value_len(zk_value_at(v, 9)), 1);
    CHECK_EQ_INT(zk_value_len(zk_value_at(v, 10)), 0);
    CHECK_EQ_INT(zk_value_len(zk_value_at(v, 16)), 0);
}

TEST(string_escapes) {
    static const char all[] = "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"";
    zk_str s;
    CHECK_EQ_INT(parse(all), ZK_OK);
    CHECK_STR(zk_value_str(root()), "\"\\/\b\f\n\r\t");
    CHECK_EQ_INT(parse("\"\\u0041\\u00e9\\u00E9\\u20ac\\uFFFF\\u0080\\u07FF\\u0800\""), ZK_OK);
    CHECK_STR(zk_value_str(root()),
              "A\xC3\xA9\xC3\xA9\xE2\x82\xAC\xEF\xBF\xBF\xC2\x80\xDF\xBF\xE0\xA0\x80");
    /* \u0000: the view holds a NUL byte and its length counts it */
    CHECK_EQ_INT(parse("\"a\\u0000b\""), ZK_OK);
    s = zk_value_str(root());
    CHECK_MEM(s.ptr, s.len, "a\0b", 3);
    CHECK_EQ_INT(zk_value_len(root()), 3);
    CHECK_EQ_INT(parse("\"\\u0000\""), ZK_OK);
    s = zk_value_str(root());
    CHECK_MEM(s.ptr, s.len, "\0", 1);
    /* surrogate pairs, either case */
    CHECK_EQ_INT(parse("\"\\ud83d\\ude00\""), ZK_OK);
    CHECK_STR(zk_value_str(root()), "\xF0\x9F\x98\x80");
    CHECK_EQ_INT(parse("\"x\\uD834\\uDd1Ey\""), ZK_OK);
    CHECK_STR(zk_value_str(root()), "x\xF0\x9D\x84\x9Ey");
    CHECK_EQ_INT(parse("\"\\ud800\\udc00\\udbff\\udfff\""), ZK_OK);
    CHECK_STR(zk_value_str(root()), "\xF0\x90\x80\x80\xF4\x8F\xBF\xBF");
    /* raw UTF-8 (boundaries of each length, U+FFFF, U+2028) and DEL pass through */
    CHECK_EQ_INT(parse("\"\x7F\xC2\x80\xDF\xBF\xE0\xA0\x80\xED\x9F\xBF\xEE\x80\x80\xEF\xBF\xBF"
                       "\xF0\x90\x80\x80\xF4\x8F\xBF\xBF\xE2\x80\xA8 \xC3\xA9\""),
                 ZK_OK);
    CHECK_STR(zk_value_str(root()), "\x7F\xC2\x80\xDF\xBF\xE0\xA0\x80\xED\x9F\xBF\xEE\x80\x80"
                                    "\xEF\xBF\xBF\xF0\x90\x80\x80\xF4\x8F\xBF\xBF\xE2\x80\xA8 \xC3\xA9");
    /* empty */
    CHECK_EQ_INT(parse("\"\""), ZK_OK);
    CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_STRING);
    CHECK_EQ_INT(zk_value_len(root()), 0);
    CHECK_EQ_INT(zk_value_str(root()).len, 0);
    /* escaped keys: looked up and listed decoded */
    CHECK_EQ_INT(parse("{\"a\\u0062\":1,\"\\u0000\":2,\"\\\"q\\\"\":3,\"\":4}"), ZK_OK);
    CHECK_EQ_INT(zk_value_int(zk_value_get(root(), "ab"), 0), 1);
    CHECK_EQ_INT(zk_value_int(zk_value_get_n(root(), "\0", 1), 0), 2);
    CHECK_EQ_INT(zk_value_int(zk_value_get(root(), "\"q\""), 0), 3);
    CHECK_EQ_INT(zk_value_int(zk_value_get(root(), ""), 0), 4);
    CHECK_STR(zk_value_key(zk_value_first(root())), "ab");
    s = zk_value_key(zk_value_next(zk_value_first(root())));
    CHECK_MEM(s.ptr, s.len, "\0", 1);
}

/* Every special byte at every offset of a string up to 130 bytes long, so
   block-wise (SIMD) scans meet it at each lane and at each tail length. */
TEST(string_special_byte_at_every_offset) {
    static const struct {
        const char *raw;    /* inserted bytes */
        const char *decoded; /* NULL: refused */
    } specials[] = {
        {"\\\"", "\""}, {"\\\\", "\\"}, {"\\n", "\n"}, {"\\u00e9", "\xC3\xA9"},
        {"\xC3\xA9", "\xC3\xA9"}, {"\xF0\x9F\x98\x80", "\xF0\x9F\x98\x80"}, {"\x7F", "\x7F"},
        {"\x01", NULL}, {"\x1F", NULL}, {"\t", NULL}, {"\n", NULL}, {"\xC0\xAF", NULL},
        {"\x80", NULL}, {"\xED\xA0\x80", NULL}, {"\xE2\x82", NULL}, {"\xFF", NULL},
    };
    size_t k, len, at;
    int reported = 0;
    for (k = 0; k < COUNT(specials); k++)
        for (len = 0; len <= 130; len += (len < 70 ? 1 : 13))
            for (at = 0; at <= len; at++) {
                text in = {0}, want = {0};
                int rc, before = test__failed_checks;
                text_str(&in, "\"");
                text_rep(&in, "a", at);
                text_rep(&want, "a", at);
                text_str(&in, specials[k].raw);
                if (specials[k].decoded) text_str(&want, specials[k].decoded);
                text_rep(&in, "b", len - at);
                text_rep(&want, "b", len - at);
                text_str(&in, "\"");
                rc = parse_n(in.p, in.len);
                if (specials[k].decoded) {
                    CHECK_EQ_INT(rc, ZK_OK);
                    CHECK_MEM(zk_value_str(root()).ptr, zk_value_str(root()).len, want.p,
                              want.len);
                } else {
                    CHECK_EQ_INT(rc, ZK_EPARSE);
                    CHECK(doc.error_at <= in.len);
                }
                if (test__failed_checks != before && reported++ < 5) {
                    printf("    input ");
                    show(in.p, in.len);
                    printf("\n");
                }
                text_free(&in);
                text_free(&want);
            }
}

TEST(string_of_1_mib_decoded_in_place) {
    static const struct {
        const char *raw, *decoded;
    } units[] = {
        {"abcdefghij", "abcdefghij"}, {"\\n", "\n"}, {"\\u00e9", "\xC3\xA9"},
        {"\xC3\xA9", "\xC3\xA9"}, {"\\ud83d\\ude00", "\xF0\x9F\x98\x80"}, {"\\\"", "\""},
        {"\\\\", "\\"}, {"\\/", "/"}, {"\\u0000", ""}, {" ", " "},
    };
    text in = {0}, want = {0};
    size_t k = 0;
    zk_str s;
    text_str(&in, "[\"");
    while (in.len < (1u << 20)) {
        text_str(&in, units[k].raw);
        if (k == 8) text_add(&want, "", 1); /* the NUL of \u0000 */
        else text_str(&want, units[k].decoded);
        k = (k + 1) % COUNT(units);
    }
    text_str(&in, "\",\"");
    text_rep(&in, "x", 1u << 20);
    text_str(&in, "\"]");
    CHECK_EQ_INT(parse_n(in.p, in.len), ZK_OK);
    s = zk_value_str(zk_value_at(root(), 0));
    CHECK_MEM(s.ptr, s.len, want.p, want.len);
    CHECK_EQ_INT(zk_value_len(zk_value_at(root(), 0)), want.len);
    /* zero-copy: the views point into the buffer parsed */
    CHECK(s.ptr >= doc_buf && s.ptr + s.len <= doc_buf + in.len);
    s = zk_value_str(zk_value_at(root(), 1));
    CHECK_EQ_INT(s.len, 1u << 20);
    CHECK(s.ptr >= doc_buf && s.ptr + s.len <= doc_buf + in.len);
    CHECK(s.len == (1u << 20) && s.ptr[0] == 'x' && s.ptr[s.len - 1] == 'x');
    text_free(&in);
    text_free(&want);
}

TEST(duplicate_keys_and_lookup) {
    zk_value e;
    int n = 0;
    CHECK_EQ_INT(parse("{\"a\":1,\"b\":2,\"a\":3,\"ab\":4}"), ZK_OK);
    CHECK_EQ_INT(zk_value_len(root()), 4);
    CHECK_EQ_INT(zk_value_int(zk_value_get(root(), "a"), 0), 1);
    CHECK_EQ_INT(zk_value_int(zk_value_get(root(), "ab"), 0), 4);
    CHECK_EQ_INT(zk_value_int(zk_value_get_n(root(), "abc", 2), 0), 4);
    CHECK_EQ_INT(zk_value_int(zk_value_get_n(root(), "bz", 1), 0), 2);
    CHECK_EQ_INT(zk_value_type(zk_value_get(root(), "A")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(zk_value_get(root(), "c")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(zk_value_get(root(), "")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(zk_value_get(root(), "abc")), ZK_TYPE_NONE);
    for (e = zk_value_first(root()); zk_value_type(e); e = zk_value_next(e)) n++;
    CHECK_EQ_INT(n, 4);
    /* get on what is not an object */
    CHECK_EQ_INT(parse("[{\"a\":1}]"), ZK_OK);
    CHECK_EQ_INT(zk_value_type(zk_value_get(root(), "a")), ZK_TYPE_NONE);
    CHECK_EQ_INT(parse("\"a\""), ZK_OK);
    CHECK_EQ_INT(zk_value_type(zk_value_get(root(), "a")), ZK_TYPE_NONE);
    /* a member whose value is a container is skipped as a whole */
    CHECK_EQ_INT(parse("{\"x\":{\"a\":1,\"b\":[{\"a\":2}]},\"a\":3}"), ZK_OK);
    CHECK_EQ_INT(zk_value_int(zk_value_get(root(), "a"), 0), 3);
}

TEST(array_at) {
    CHECK_EQ_INT(parse("[10,20,30]"), ZK_OK);
    CHECK_EQ_INT(zk_value_len(root()), 3);
    CHECK_EQ_INT(zk_value_int(zk_value_at(root(), 0), 0), 10);
    CHECK_EQ_INT(zk_value_int(zk_value_at(root(), 1), 0), 20);
    CHECK_EQ_INT(zk_value_int(zk_value_at(root(), 2), 0), 30);
    CHECK_EQ_INT(zk_value_type(zk_value_at(root(), 3)), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(zk_value_at(root(), 1000000)), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(zk_value_at(root(), (size_t)-1)), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(zk_value_at(zk_value_at(root(), 0), 0)), ZK_TYPE_NONE);
    CHECK_EQ_INT(parse("\"abc\""), ZK_OK);
    CHECK_EQ_INT(zk_value_type(zk_value_at(root(), 0)), ZK_TYPE_NONE);
}

TEST(paths) {
    CHECK_EQ_INT(parse("{\"a\":{\"b\":[0,1,{\"c\":\"x\"}]},\"arr\":[[5,6]],\"n\":null}"), ZK_OK);
    CHECK_STR(zk_value_str(at_path("a.b[2].c")), "x");
    CHECK_EQ_INT(zk_value_type(at_path("a.b[0]")), ZK_TYPE_INT);
    CHECK_EQ_INT(zk_value_int(at_path("a.b[1]"), 9), 1);
    CHECK_EQ_INT(zk_value_type(at_path("a")), ZK_TYPE_OBJECT);
    CHECK_EQ_INT(zk_value_len(at_path("a.b")), 3);
    CHECK_EQ_INT(zk_value_int(at_path("arr[0][1]"), 0), 6);
    CHECK_EQ_INT(zk_value_type(at_path("n")), ZK_TYPE_NULL);
    /* missing steps */
    CHECK_EQ_INT(zk_value_type(at_path("z")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("a.z")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("a.b[3]")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("a.b[2].d")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("a.b.c")), ZK_TYPE_NONE);    /* b is an array */
    CHECK_EQ_INT(zk_value_type(at_path("a[0]")), ZK_TYPE_NONE);     /* a is an object */
    CHECK_EQ_INT(zk_value_type(at_path("n.x")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("arr[0][2]")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("a.b[2].c.d")), ZK_TYPE_NONE);
    /* malformed */
    CHECK_EQ_INT(zk_value_type(at_path("a..b")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("a.")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("a[")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("a.b[")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("a.b[1")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("a.b[x]")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("a.b[]")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("a.b[-1]")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("a.b[+1]")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("a.b[1x]")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("a.b[1]x")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("a.b]")), ZK_TYPE_NONE);
    /* 2^64 + 2 must not wrap around to 2 */
    CHECK_EQ_INT(zk_value_type(at_path("a.b[18446744073709551618]")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("a.b[4294967298]")), ZK_TYPE_NONE);
    /* on an array root */
    CHECK_EQ_INT(parse("[7,[8,9],{\"k\":[true]}]"), ZK_OK);
    CHECK_EQ_INT(zk_value_int(at_path("[0]"), 0), 7);
    CHECK_EQ_INT(zk_value_int(at_path("[1][1]"), 0), 9);
    CHECK_EQ_INT(zk_value_bool(at_path("[2].k[0]"), 0), 1);
    CHECK_EQ_INT(zk_value_type(at_path("[3]")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("k")), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(at_path("[0")), ZK_TYPE_NONE);
    /* a path from an inner value */
    CHECK_EQ_INT(zk_value_int(zk_value_path(zk_value_at(root(), 1), "[0]"), 0), 8);
}

TEST(iteration_and_keys) {
    static const char *const keys[] = {"a", "b", "c", "d"};
    static const int types[] = {ZK_TYPE_INT, ZK_TYPE_ARRAY, ZK_TYPE_OBJECT, ZK_TYPE_STRING};
    zk_value e;
    int n = 0;
    CHECK_EQ_INT(parse("{\"a\":1,\"b\":[2,[3]],\"c\":{\"x\":{\"y\":4}},\"d\":\"s\"}"), ZK_OK);
    for (e = zk_value_first(root()); zk_value_type(e); e = zk_value_next(e), n++) {
        if (n >= 4) break;
        CHECK_STR(zk_value_key(e), keys[n]);
        CHECK_EQ_INT(zk_value_type(e), types[n]);
    }
    CHECK_EQ_INT(n, 4);
    /* inner keys do not leak into the outer iteration */
    e = zk_value_first(zk_value_get(root(), "c"));
    CHECK_STR(zk_value_key(e), "x");
    CHECK_EQ_INT(zk_value_type(zk_value_next(e)), ZK_TYPE_NONE);
    CHECK_STR(zk_value_key(zk_value_first(e)), "y");
    /* arrays: elements, no keys */
    CHECK_EQ_INT(parse("[1,[2,3],{\"a\":4},5,\"k\"]"), ZK_OK);
    n = 0;
    for (e = zk_value_first(root()); zk_value_type(e); e = zk_value_next(e), n++) {
        if (n >= 5) break;
        CHECK_EQ_INT(zk_value_key(e).len, 0);
    }
    CHECK_EQ_INT(n, 5);
    e = zk_value_next(zk_value_first(root()));
    CHECK_EQ_INT(zk_value_type(e), ZK_TYPE_ARRAY);
    CHECK_EQ_INT(zk_value_int(zk_value_next(zk_value_next(e)), 0), 5);
    /* scalars and the root have no first, next or key */
    CHECK_EQ_INT(zk_value_type(zk_value_first(zk_value_at(root(), 0))), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(zk_value_first(zk_value_at(root(), 4))), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(zk_value_next(root())), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_key(root()).len, 0);
    CHECK_EQ_INT(zk_value_type(zk_value_next(zk_value_at(root(), 4))), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(zk_value_first(zk_value_next(zk_value_first(root())))),
                 ZK_TYPE_INT);
    /* the NONE value */
    e = zk_value_at(root(), 99);
    CHECK_EQ_INT(zk_value_type(zk_value_next(e)), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_type(zk_value_first(e)), ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_value_key(e).len, 0);
}

/* ======================= reader: invalid input ======================= */

TEST(invalid_trailing_commas) { check_bad_table(bad_commas, COUNT(bad_commas)); }
TEST(invalid_numbers) { check_bad_table(bad_numbers, COUNT(bad_numbers)); }
TEST(invalid_literals) { check_bad_table(bad_literals, COUNT(bad_literals)); }
TEST(invalid_quotes_keys_comments) { check_bad_table(bad_syntax, COUNT(bad_syntax)); }
TEST(invalid_escapes) { check_bad_table(bad_escapes, COUNT(bad_escapes)); }
TEST(invalid_lone_surrogates) { check_bad_table(bad_surrogates, COUNT(bad_surrogates)); }
TEST(invalid_utf8) { check_bad_table(bad_utf8, COUNT(bad_utf8)); }
TEST(invalid_unterminated) { check_bad_table(bad_unterminated, COUNT(bad_unterminated)); }
TEST(invalid_structure) { check_bad_table(bad_structure, COUNT(bad_structure)); }
TEST(invalid_two_top_level_values) { check_bad_table(bad_top_level, COUNT(bad_top_level)); }
TEST(invalid_empty_blank_and_nul) { check_bad_table(bad_blank, COUNT(bad_blank)); }

TEST(invalid_raw_control_characters) {
    int c;
    for (c = 0; c < 0x20; c++) {
        char s[16];
        bad_case bc;
        memcpy(s, "\"a?b\"", 6);
        s[2] = (char)c;
        bc.s = s, bc.n = 5, bc.lo = 0, bc.hi = 2;
        check_bad(&bc);
        memcpy(s, "{\"a?\":1}", 9);
        s[3] = (char)c;
        bc.s = s, bc.n = 8, bc.lo = 1, bc.hi = 3;
        check_bad(&bc);
    }
    CHECK_EQ_INT(parse("\"a\x7F" "b\""), ZK_OK); /* DEL is no control character in JSON */
}

/* ============================== limits =============================== */

static void nest(text *t, size_t depth, const char *open, const char *inner, const char *close) {
    t->len = 0;
    text_rep(t, open, depth);
    text_str(t, inner);
    text_rep(t, close, depth);
}

TEST(depth_limit) {
    text t = {0};
    zk_value v;
    size_t i;
    nest(&t, ZK_DOC_MAX_DEPTH, "[", "", "]");
    CHECK_EQ_INT(parse_n(t.p, t.len), ZK_OK);
    nest(&t, ZK_DOC_MAX_DEPTH, "[", "1", "]");
    CHECK_EQ_INT(parse_n(t.p, t.len), ZK_OK);
    for (v = root(), i = 1; i < ZK_DOC_MAX_DEPTH; i++) v = zk_value_at(v, 0);
    CHECK_EQ_INT(zk_value_int(zk_value_at(v, 0), 0), 1);
    nest(&t, ZK_DOC_MAX_DEPTH + 1, "[", "", "]");
    CHECK_EQ_INT(parse_n(t.p, t.len), ZK_ETOOBIG);
    CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_NONE);
    nest(&t, ZK_DOC_MAX_DEPTH + 1, "[", "1", "]");
    CHECK_EQ_INT(parse_n(t.p, t.len), ZK_ETOOBIG);
    nest(&t, ZK_DOC_MAX_DEPTH, "{\"a\":", "1", "}");
    CHECK_EQ_INT(parse_n(t.p, t.len), ZK_OK);
    nest(&t, ZK_DOC_MAX_DEPTH - 1, "{\"a\":", "{}", "}");
    CHECK_EQ_INT(parse_n(t.p, t.len), ZK_OK);
    nest(&t, ZK_DOC_MAX_DEPTH + 1, "{\"a\":", "1", "}");
    CHECK_EQ_INT(parse_n(t.p, t.len), ZK_ETOOBIG);
    nest(&t, ZK_DOC_MAX_DEPTH, "{\"a\":", "{}", "}");
    CHECK_EQ_INT(parse_n(t.p, t.len), ZK_ETOOBIG);
    nest(&t, ZK_DOC_MAX_DEPTH / 2, "[{\"a\":", "0", "}]");
    CHECK_EQ_INT(parse_n(t.p, t.len), ZK_OK);
    nest(&t, ZK_DOC_MAX_DEPTH / 2, "[{\"a\":", "[]", "}]");
    CHECK_EQ_INT(parse_n(t.p, t.len), ZK_ETOOBIG);
    /* wide is not deep */
    t.len = 0;
    text_str(&t, "[");
    text_rep(&t, "[[]],", 1000);
    text_str(&t, "[]]");
    CHECK_EQ_INT(parse_n(t.p, t.len), ZK_OK);
    CHECK_EQ_INT(zk_value_len(root()), 1001);
    text_free(&t);
}

TEST(depth_limit_custom) {
    zk_doc d = {0};
    text t = {0};
    char *copy;
    d.max_depth = 3;
    nest(&t, 3, "[", "1", "]");
    copy = (char *)malloc(1000);
    memcpy(copy, t.p, t.len);
    CHECK_EQ_INT(zk_json_parse(&d, copy, t.len), ZK_OK);
    nest(&t, 4, "[", "1", "]");
    memcpy(copy, t.p, t.len);
    CHECK_EQ_INT(zk_json_parse(&d, copy, t.len), ZK_ETOOBIG);
    nest(&t, 2, "{\"k\":", "{}", "}");
    memcpy(copy, t.p, t.len);
    CHECK_EQ_INT(zk_json_parse(&d, copy, t.len), ZK_OK);
    nest(&t, 3, "{\"k\":", "{}", "}");
    memcpy(copy, t.p, t.len);
    CHECK_EQ_INT(zk_json_parse(&d, copy, t.len), ZK_ETOOBIG);
    d.max_depth = 1;
    memcpy(copy, "[1,2]", 5);
    CHECK_EQ_INT(zk_json_parse(&d, copy, 5), ZK_OK);
    memcpy(copy, "[[]]", 4);
    CHECK_EQ_INT(zk_json_parse(&d, copy, 4), ZK_ETOOBIG);
    memcpy(copy, "7", 1);
    CHECK_EQ_INT(zk_json_parse(&d, copy, 1), ZK_OK);
    /* above ZK_DOC_MAX_DEPTH means ZK_DOC_MAX_DEPTH */
    d.max_depth = 100000;
    free(copy);
    nest(&t, ZK_DOC_MAX_DEPTH, "[", "", "]");
    copy = (char *)malloc(t.len + ZK_DOC_MAX_DEPTH * 2);
    memcpy(copy, t.p, t.len);
    CHECK_EQ_INT(zk_json_parse(&d, copy, t.len), ZK_OK);
    nest(&t, ZK_DOC_MAX_DEPTH + 1, "[", "", "]");
    memcpy(copy, t.p, t.len);
    CHECK_EQ_INT(zk_json_parse(&d, copy, t.len), ZK_ETOOBIG);
    free(copy);
    text_free(&t);
    zk_doc_free(&d);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

TEST(depth_100000_refused_without_recursion) {
    static const char *const shapes[][3] = {
        {"[", "", "]"}, {"{\"a\":", "1", "}"}, {"[", "", ""}, {"[{\"\":", "", ""}};
    text t = {0};
    size_t k;
    double start = now_seconds();
    for (k = 0; k < COUNT(shapes); k++) {
        nest(&t, 100000, shapes[k][0], shapes[k][1], shapes[k][2]);
        CHECK_EQ_INT(parse_n(t.p, t.len), ZK_ETOOBIG);
        CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_NONE);
    }
    CHECK(now_seconds() - start < 2.0);
    text_free(&t);
}

static void array_of_zeros(text *t, size_t count) {
    t->len = 0;
    text_str(t, "[");
    text_rep(t, "0,", count - 1);
    text_str(t, "0]");
}

/* Parses s into a fresh document limited to max_nodes values. */
static int parse_with_max_nodes(uint32_t max_nodes, const char *s, size_t n) {
    zk_doc d = {0};
    char *copy = (char *)malloc(n ? n : 1);
    int rc;
    memcpy(copy, s, n);
    d.max_nodes = max_nodes;
    rc = zk_json_parse(&d, copy, n);
    if (rc == ZK_OK) CHECK_EQ_INT(zk_value_type(zk_doc_root(&d)), ZK_TYPE_ARRAY + (s[0] == '{'));
    zk_doc_free(&d);
    free(copy);
    return rc;
}

TEST(node_limit) {
    text t = {0};
    /* the default: an array and 65535 elements are 65536 values */
    array_of_zeros(&t, ZK_DOC_MAX_NODES - 1);
    CHECK_EQ_INT(parse_n(t.p, t.len), ZK_OK);
    CHECK_EQ_INT(zk_value_len(root()), ZK_DOC_MAX_NODES - 1);
    array_of_zeros(&t, ZK_DOC_MAX_NODES);
    CHECK_EQ_INT(parse_n(t.p, t.len), ZK_ETOOBIG);
    CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_NONE);
    /* a smaller one */
    CHECK_EQ_INT(parse_with_max_nodes(5, IN("[1,2,3,4]")), ZK_OK);
    CHECK_EQ_INT(parse_with_max_nodes(5, IN("[1,2,3,4,5]")), ZK_ETOOBIG);
    CHECK_EQ_INT(parse_with_max_nodes(5, IN("[[1],[2]]")), ZK_OK);
    CHECK_EQ_INT(parse_with_max_nodes(5, IN("[[1],[2],[]]")), ZK_ETOOBIG);
    CHECK_EQ_INT(parse_with_max_nodes(1, IN("[]")), ZK_OK);
    CHECK_EQ_INT(parse_with_max_nodes(1, IN("[1]")), ZK_ETOOBIG);
    /* and a larger one than the default */
    array_of_zeros(&t, 70000);
    CHECK_EQ_INT(parse_with_max_nodes(70001, t.p, t.len), ZK_OK);
    array_of_zeros(&t, 70001);
    CHECK_EQ_INT(parse_with_max_nodes(70001, t.p, t.len), ZK_ETOOBIG);
    text_free(&t);
}

/* "more than max_nodes values" (value.h): a key is not a value, so an
   object with two members is three values. */
/* max_nodes counts values and object keys (src/value.h): {"a":1,"b":2}
   is the object, two keys and two values. */
TEST(node_limit_counts_values_and_keys) {
    CHECK_EQ_INT(parse_with_max_nodes(5, IN("{\"a\":1,\"b\":2}")), ZK_OK);
    CHECK_EQ_INT(parse_with_max_nodes(4, IN("{\"a\":1,\"b\":2}")), ZK_ETOOBIG);
    CHECK_EQ_INT(parse_with_max_nodes(4, IN("[{\"a\":1}]")), ZK_OK);
    CHECK_EQ_INT(parse_with_max_nodes(3, IN("[{\"a\":1}]")), ZK_ETOOBIG);
}

/* A limit lowered on a document that parsed a larger input before holds
   at once, not only when the node array next grows. */
TEST(node_limit_lowered_on_a_reused_doc) {
    zk_doc d = {0};
    char copy[16];
    memcpy(copy, "[1,2,3,4,5,6,7]", 15);
    CHECK_EQ_INT(zk_json_parse(&d, copy, 15), ZK_OK);
    d.max_nodes = 3;
    memcpy(copy, "[1,2,3,4,5,6,7]", 15);
    CHECK_EQ_INT(zk_json_parse(&d, copy, 15), ZK_ETOOBIG);
    memcpy(copy, "[1,2]", 5);
    CHECK_EQ_INT(zk_json_parse(&d, copy, 5), ZK_OK);
    memcpy(copy, "[1,2,3]", 7);
    CHECK_EQ_INT(zk_json_parse(&d, copy, 7), ZK_ETOOBIG);
    zk_doc_free(&d);
}

/* (NULL, 0) is empty input: refused, with no pointer arithmetic on NULL
   (clang's UBSan would stop on it). */
TEST(null_buffer_is_empty_input) {
    zk_doc d = {0};
    CHECK_EQ_INT(zk_json_parse(&d, NULL, 0), ZK_EPARSE);
    CHECK(d.error != NULL);
    CHECK_EQ_INT(zk_value_type(zk_doc_root(&d)), ZK_TYPE_NONE);
    zk_doc_free(&d);
}

/* ================================ reuse =============================== */

TEST(one_doc_many_documents) {
    zk_doc d;
    text t = {0};
    char *copy = NULL;
    size_t sizes[] = {1, 10, 5000, 3, 20000, 0, 100, 60000, 2};
    size_t k;
    zk_doc_init(&d);
    for (k = 0; k < COUNT(sizes); k++) {
        size_t i, n = sizes[k];
        char item[32];
        t.len = 0;
        text_str(&t, "{\"n\":");
        snprintf(item, sizeof item, "%zu", n);
        text_str(&t, item);
        text_str(&t, ",\"items\":[");
        for (i = 0; i < n; i++) {
            snprintf(item, sizeof item, "%s%zu", i ? "," : "", i * 3);
            text_str(&t, item);
        }
        text_str(&t, "]}");
        free(copy);
        copy = (char *)malloc(t.len);
        memcpy(copy, t.p, t.len);
        CHECK_EQ_INT(zk_json_parse(&d, copy, t.len), ZK_OK);
        CHECK_EQ_INT(zk_value_int(zk_value_get(zk_doc_root(&d), "n"), -1), n);
        CHECK_EQ_INT(zk_value_len(zk_value_get(zk_doc_root(&d), "items")), n);
        if (n) {
            zk_value last = zk_value_at(zk_value_get(zk_doc_root(&d), "items"), n - 1);
            CHECK_EQ_INT(zk_value_int(last, -1), (n - 1) * 3);
            CHECK_EQ_INT(zk_value_type(zk_value_next(last)), ZK_TYPE_NONE);
        }
        /* a failed parse in between leaves no root, and the next one works */
        memcpy(copy, "[1,", 3);
        CHECK_EQ_INT(zk_json_parse(&d, copy, 3), ZK_EPARSE);
        CHECK_EQ_INT(zk_value_type(zk_doc_root(&d)), ZK_TYPE_NONE);
        CHECK_EQ_INT(zk_value_len(zk_doc_root(&d)), 0);
    }
    /* so does one refused for size */
    t.len = 0;
    text_rep(&t, "[", 100);
    free(copy);
    copy = (char *)malloc(t.len);
    memcpy(copy, t.p, t.len);
    CHECK_EQ_INT(zk_json_parse(&d, copy, t.len), ZK_ETOOBIG);
    CHECK_EQ_INT(zk_value_type(zk_doc_root(&d)), ZK_TYPE_NONE);
    memcpy(copy, "{\"ok\":true}", 11);
    CHECK_EQ_INT(zk_json_parse(&d, copy, 11), ZK_OK);
    CHECK_EQ_INT(zk_value_bool(zk_value_get(zk_doc_root(&d), "ok"), 0), 1);
    zk_doc_free(&d);
    /* and after zk_doc_init it can be used again */
    zk_doc_init(&d);
    memcpy(copy, "[[]]", 4);
    CHECK_EQ_INT(zk_json_parse(&d, copy, 4), ZK_OK);
    zk_doc_free(&d);
    free(copy);
    text_free(&t);
}

/* ============================= guard page ============================= */

/* Parses buf[0..n) placed against an unmapped page; returns the code and
   checks that the root agrees with it. */
static int guard_parse(const char *s, size_t n) {
    guard_buf g = guard_alloc(s, n);
    zk_doc d = {0};
    int rc = zk_json_parse(&d, (char *)g.data, n);
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
    for (i = 0; i < COUNT(good_docs); i++)
        for (k = 0; k <= good_docs[i].n; k++) {
            int rc = guard_parse(good_docs[i].s, k);
            if (k == good_docs[i].n) CHECK_EQ_INT(rc, ZK_OK);
        }
    for (t = 0; t < COUNT(bad_tables); t++)
        for (i = 0; i < bad_tables[t].count; i++) {
            const bad_case *c = &bad_tables[t].cases[i];
            for (k = 0; k <= c->n; k++) {
                int rc = guard_parse(c->s, k);
                if (k == c->n) CHECK_EQ_INT(rc, ZK_EPARSE);
            }
        }
    /* a number, a literal and a string cut by the page, one byte each */
    CHECK_EQ_INT(guard_parse(IN("5")), ZK_OK);
    CHECK_EQ_INT(guard_parse(IN("-")), ZK_EPARSE);
    CHECK_EQ_INT(guard_parse(IN("n")), ZK_EPARSE);
    CHECK_EQ_INT(guard_parse(IN("\"")), ZK_EPARSE);
    CHECK_EQ_INT(guard_parse(IN("\"\\")), ZK_EPARSE);
    CHECK_EQ_INT(guard_parse(IN("\"\\u")), ZK_EPARSE);
    CHECK_EQ_INT(guard_parse(IN("\"\\ud83d\\")), ZK_EPARSE);
    CHECK_EQ_INT(guard_parse(IN("\"\xF0\x9F")), ZK_EPARSE);
}

TEST(out_of_memory) {
    zk_doc d = {0};
    char in[128];
    zk_writer wr;
    /* no node array yet */
    memcpy(in, "[1,2]", 5);
    alloc_fails = 1;
    CHECK_EQ_INT(zk_json_parse(&d, in, 5), ZK_ENOMEM);
    CHECK_EQ_INT(zk_value_type(zk_doc_root(&d)), ZK_TYPE_NONE);
    alloc_fails = 0;
    CHECK_EQ_INT(zk_json_parse(&d, in, 5), ZK_OK);
    /* a number too long for the parser's stack copy needs the heap */
    memset(in, '1', 100);
    in[1] = '.';
    alloc_fails = 1;
    CHECK_EQ_INT(zk_json_parse(&d, in, 100), ZK_ENOMEM);
    alloc_fails = 0;
    CHECK_EQ_INT(zk_json_parse(&d, in, 100), ZK_OK);
    CHECK_EQ_INT(zk_value_type(zk_doc_root(&d)), ZK_TYPE_DOUBLE);
    zk_doc_free(&d);
    /* a growable writer */
    zk_writer_init(&wr, NULL, 0);
    alloc_fails = 1;
    zk_write_int(&wr, 1);
    CHECK_EQ_INT(zk_writer_error(&wr), ZK_ENOMEM);
    CHECK(zk_writer_result(&wr).ptr == NULL);
    alloc_fails = 0;
    zk_write_int(&wr, 1);
    CHECK_EQ_INT(zk_writer_error(&wr), ZK_ENOMEM);
    zk_writer_reset(&wr);
    zk_write_int(&wr, 1);
    CHECK_STR(zk_writer_result(&wr), "1");
    zk_writer_free(&wr);
}

/* ============================== writer =============================== */

static zk_writer w; /* reused: zk_writer_reset between values */

#define WRITES(calls, expect)                                                 \
    do {                                                                      \
        zk_writer_reset(&w);                                                  \
        calls;                                                                \
        CHECK_EQ_INT(zk_writer_error(&w), ZK_OK);                             \
        CHECK_STR(zk_writer_result(&w), expect);                              \
    } while (0)

TEST(writer_each_call) {
    zk_writer_init(&w, NULL, 0);
    WRITES((zk_write_object(&w), zk_write_key(&w, "a"), zk_write_array(&w), zk_write_int(&w, 1),
            zk_write_int(&w, -2), zk_write_double(&w, 3.5), zk_write_bool(&w, 1),
            zk_write_bool(&w, 0), zk_write_null(&w), zk_write_str(&w, "x"), zk_write_end(&w),
            zk_write_end(&w)),
           "{\"a\":[1,-2,3.5,true,false,null,\"x\"]}");
    WRITES(zk_write_int(&w, 0), "0");
    WRITES(zk_write_int(&w, -1), "-1");
    WRITES(zk_write_int(&w, INT64_MAX), "9223372036854775807");
    WRITES(zk_write_int(&w, INT64_MIN), "-9223372036854775808");
    WRITES(zk_write_double(&w, 0.5), "0.5");
    WRITES(zk_write_double(&w, -0.25), "-0.25");
    WRITES(zk_write_bool(&w, 1), "true");
    WRITES(zk_write_bool(&w, 0), "false");
    WRITES(zk_write_bool(&w, 7), "true");
    WRITES(zk_write_null(&w), "null");
    WRITES(zk_write_str(&w, NULL), "null");
    WRITES(zk_write_str(&w, ""), "\"\"");
    WRITES(zk_write_str(&w, "hello world"), "\"hello world\"");
    WRITES(zk_write_str_n(&w, "abcdef", 3), "\"abc\"");
    WRITES(zk_write_str_n(&w, "a\0b", 3), "\"a\\u0000b\"");
    WRITES((zk_write_array(&w), zk_write_end(&w)), "[]");
    WRITES((zk_write_object(&w), zk_write_end(&w)), "{}");
    WRITES((zk_write_array(&w), zk_write_array(&w), zk_write_end(&w), zk_write_object(&w),
            zk_write_end(&w), zk_write_end(&w)),
           "[[],{}]");
    WRITES((zk_write_object(&w), zk_write_key(&w, "a"), zk_write_int(&w, 1), zk_write_key(&w, "b"),
            zk_write_object(&w), zk_write_key(&w, "c"), zk_write_array(&w), zk_write_end(&w),
            zk_write_end(&w), zk_write_key(&w, ""), zk_write_str(&w, ""), zk_write_end(&w)),
           "{\"a\":1,\"b\":{\"c\":[]},\"\":\"\"}");
    WRITES((zk_write_object(&w), zk_write_key_n(&w, "k\0ey", 4), zk_write_null(&w),
            zk_write_key_n(&w, "xyz", 1), zk_write_str(&w, NULL), zk_write_key(&w, "q\"\\"),
            zk_write_bool(&w, 0), zk_write_end(&w)),
           "{\"k\\u0000ey\":null,\"x\":null,\"q\\\"\\\\\":false}");
    zk_writer_free(&w);
}

/* s is the escaped form of byte c: a short form or \u00XX (either case). */
static int escape_ok(int c, const char *s, size_t n) {
    static const char hex_lo[] = "0123456789abcdef", hex_hi[] = "0123456789ABCDEF";
    static const char controls[] = "\b\f\n\r\t", letters[] = "bfnrt";
    size_t k;
    for (k = 0; k < 5; k++)
        if (c == controls[k] && n == 2 && s[0] == '\\' && s[1] == letters[k]) return 1;
    return n == 6 && memcmp(s, "\\u00", 4) == 0 &&
           (s[4] == hex_lo[c >> 4] || s[4] == hex_hi[c >> 4]) &&
           (s[5] == hex_lo[c & 15] || s[5] == hex_hi[c & 15]);
}

TEST(writer_escaping) {
    int c;
    zk_writer_init(&w, NULL, 0);
    for (c = 0; c < 0x20; c++) {
        char ch = (char)c;
        zk_str r;
        zk_writer_reset(&w);
        zk_write_str_n(&w, &ch, 1);
        r = zk_writer_result(&w);
        CHECK(r.ptr != NULL && r.len >= 4 && r.ptr[0] == '"' && r.ptr[r.len - 1] == '"');
        if (r.ptr && r.len >= 2) {
            CHECK(escape_ok(c, r.ptr + 1, r.len - 2));
            if (!escape_ok(c, r.ptr + 1, r.len - 2)) printf("    byte 0x%02X written as %.*s\n", c,
                                                            (int)r.len, r.ptr);
        }
    }
    WRITES(zk_write_str(&w, "\""), "\"\\\"\"");
    WRITES(zk_write_str(&w, "\\"), "\"\\\\\"");
    WRITES(zk_write_str(&w, "a\"b\\c"), "\"a\\\"b\\\\c\"");
    /* DEL, printable ASCII and non-ASCII UTF-8 pass through */
    WRITES(zk_write_str(&w, "\x7F"), "\"\x7F\"");
    WRITES(zk_write_str(&w, " !#$%&'()*+,-.0123456789:;<=>?@AZ[]^_`az{|}~"),
           "\" !#$%&'()*+,-.0123456789:;<=>?@AZ[]^_`az{|}~\"");
    WRITES(zk_write_str(&w, "\xC2\x80\xC3\xA9\xDF\xBF\xE0\xA0\x80\xE2\x82\xAC\xE2\x80\xA8\xED\x9F"
                            "\xBF\xEE\x80\x80\xEF\xBF\xBF\xF0\x90\x80\x80\xF0\x9F\x98\x80\xF4\x8F"
                            "\xBF\xBF"),
           "\"\xC2\x80\xC3\xA9\xDF\xBF\xE0\xA0\x80\xE2\x82\xAC\xE2\x80\xA8\xED\x9F\xBF\xEE\x80\x80"
           "\xEF\xBF\xBF\xF0\x90\x80\x80\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF\"");
    /* '/' may be escaped or not */
    zk_writer_reset(&w);
    zk_write_str(&w, "/");
    CHECK(view_eq(zk_writer_result(&w), zk_str_c("\"/\"")) ||
          view_eq(zk_writer_result(&w), zk_str_c("\"\\/\"")));
    /* keys are escaped the same way */
    WRITES((zk_write_object(&w), zk_write_key(&w, "\"\\\x7F\xC3\xA9"), zk_write_int(&w, 1),
            zk_write_end(&w)),
           "{\"\\\"\\\\\x7F\xC3\xA9\":1}");
    /* every byte below 0x80, then some UTF-8, round trips */
    {
        char all[128 + 8];
        zk_str r;
        for (c = 0; c < 128; c++) all[c] = (char)c;
        memcpy(all + 128, "\xF0\x9F\x98\x80\xC3\xA9\xE2\x82", 8);
        zk_writer_reset(&w);
        zk_write_array(&w);
        zk_write_str_n(&w, all, 128 + 6);
        zk_write_end(&w);
        r = zk_writer_result(&w);
        CHECK(r.ptr != NULL);
        if (r.ptr) {
            zk_str s;
            CHECK_EQ_INT(parse_n(r.ptr, r.len), ZK_OK);
            s = zk_value_str(zk_value_at(root(), 0));
            CHECK_MEM(s.ptr, s.len, all, 128 + 6);
        }
    }
    zk_writer_free(&w);
}

TEST(writer_refuses_invalid_utf8_nan_and_infinity) {
    static const char *const bad[] = {
        "\xC0\x80", "\xC1\xBF", "\xE0\x80\x80", "\xE0\x9F\xBF", "\xF0\x80\x80\x80",
        "\xF0\x8F\xBF\xBF", "\xED\xA0\x80", "\xED\xBF\xBF", "\xED\xA0\xBD\xED\xB8\x80",
        "\xE2\x82", "\xF0\x9F\x98", "\xC3", "a\xC3", "\xC3(", "\x80", "\xBF", "a\200b",
        "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\xF8\x88\x80\x80\x80", "\xFE", "\xFF",
    };
    size_t i;
    zk_writer_init(&w, NULL, 0);
    for (i = 0; i < COUNT(bad); i++) {
        int before = test__failed_checks;
        zk_writer_reset(&w);
        zk_write_array(&w);
        zk_write_str(&w, bad[i]);
        zk_write_end(&w);
        CHECK_EQ_INT(zk_writer_error(&w), ZK_EINVAL);
        CHECK(zk_writer_result(&w).ptr == NULL && zk_writer_result(&w).len == 0);
        zk_writer_reset(&w);
        zk_write_object(&w);
        zk_write_key(&w, bad[i]);
        zk_write_int(&w, 1);
        zk_write_end(&w);
        CHECK_EQ_INT(zk_writer_error(&w), ZK_EINVAL);
        CHECK(zk_writer_result(&w).ptr == NULL);
        if (test__failed_checks != before) {
            printf("    string ");
            show(bad[i], strlen(bad[i]));
            printf("\n");
        }
    }
    {
        const double nonfinite[] = {NAN, -NAN, INFINITY, -INFINITY, bits_double(UINT64_C(0x7FF0000000000001))};
        for (i = 0; i < COUNT(nonfinite); i++) {
            zk_writer_reset(&w);
            zk_write_double(&w, nonfinite[i]);
            CHECK_EQ_INT(zk_writer_error(&w), ZK_EINVAL);
            CHECK(zk_writer_result(&w).ptr == NULL);
            zk_writer_reset(&w);
            zk_write_array(&w);
            zk_write_double(&w, nonfinite[i]);
            zk_write_end(&w);
            CHECK_EQ_INT(zk_writer_error(&w), ZK_EINVAL);
        }
    }
    /* the largest finite values are fine */
    zk_writer_reset(&w);
    zk_write_array(&w);
    zk_write_double(&w, DBL_MAX);
    zk_write_double(&w, -DBL_MAX);
    zk_write_double(&w, 4.9406564584124654e-324);
    zk_write_end(&w);
    CHECK_EQ_INT(zk_writer_error(&w), ZK_OK);
    zk_writer_free(&w);
}

/* Runs one misuse sequence: the first error is code, nothing is written by
   the calls after it, and there is no result. */
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
        CHECK_EQ_INT(zk_writer_error(&w), code);                              \
        CHECK_EQ_INT(w.len, len_);                                            \
        CHECK(zk_writer_result(&w).ptr == NULL);                              \
    } while (0)

TEST(writer_structure_misuse) {
    zk_writer_init(&w, NULL, 0);
    MISUSE(ZK_EINVAL, (zk_write_object(&w), zk_write_int(&w, 1)));   /* value without key */
    MISUSE(ZK_EINVAL, (zk_write_object(&w), zk_write_str(&w, "v")));
    MISUSE(ZK_EINVAL, (zk_write_object(&w), zk_write_null(&w)));
    MISUSE(ZK_EINVAL, (zk_write_object(&w), zk_write_array(&w)));
    MISUSE(ZK_EINVAL, (zk_write_object(&w), zk_write_object(&w)));
    MISUSE(ZK_EINVAL, (zk_write_object(&w), zk_write_key(&w, "a"), zk_write_int(&w, 1),
                       zk_write_int(&w, 2)));                           /* two values, one key */
    MISUSE(ZK_EINVAL, (zk_write_array(&w), zk_write_key(&w, "a")));   /* key in an array */
    MISUSE(ZK_EINVAL, (zk_write_key(&w, "a")));                        /* key at the root */
    MISUSE(ZK_EINVAL, (zk_write_end(&w)));                             /* nothing open */
    MISUSE(ZK_EINVAL, (zk_write_array(&w), zk_write_end(&w), zk_write_end(&w)));
    MISUSE(ZK_EINVAL, (zk_write_int(&w, 1), zk_write_int(&w, 2)));    /* second root */
    MISUSE(ZK_EINVAL, (zk_write_array(&w), zk_write_end(&w), zk_write_array(&w)));
    MISUSE(ZK_EINVAL, (zk_write_null(&w), zk_write_end(&w)));
    MISUSE(ZK_EINVAL, (zk_write_object(&w), zk_write_key(&w, "a"), zk_write_key(&w, "b")));
    MISUSE(ZK_EINVAL, (zk_write_object(&w), zk_write_key(&w, "a"), zk_write_end(&w)));
    /* result before the root is closed: none, but no error either */
    zk_writer_reset(&w);
    CHECK(zk_writer_result(&w).ptr == NULL && zk_writer_result(&w).len == 0);
    zk_write_array(&w);
    CHECK(zk_writer_result(&w).ptr == NULL && zk_writer_result(&w).len == 0);
    zk_write_object(&w);
    zk_write_key(&w, "k");
    CHECK(zk_writer_result(&w).ptr == NULL);
    zk_write_int(&w, 1);
    zk_write_end(&w);
    CHECK(zk_writer_result(&w).ptr == NULL);
    zk_write_end(&w);
    CHECK_EQ_INT(zk_writer_error(&w), ZK_OK);
    CHECK_STR(zk_writer_result(&w), "[{\"k\":1}]");
    /* reset clears an error */
    zk_writer_reset(&w);
    zk_write_end(&w);
    CHECK_EQ_INT(zk_writer_error(&w), ZK_EINVAL);
    zk_writer_reset(&w);
    CHECK_EQ_INT(zk_writer_error(&w), ZK_OK);
    zk_write_int(&w, 5);
    CHECK_STR(zk_writer_result(&w), "5");
    zk_writer_free(&w);
}

TEST(writer_depth_limit) {
    text want = {0};
    int i;
    zk_writer_init(&w, NULL, 0);
    for (i = 0; i < ZK_DOC_MAX_DEPTH; i++) zk_write_array(&w);
    for (i = 0; i < ZK_DOC_MAX_DEPTH; i++) zk_write_end(&w);
    text_rep(&want, "[", ZK_DOC_MAX_DEPTH);
    text_rep(&want, "]", ZK_DOC_MAX_DEPTH);
    CHECK_EQ_INT(zk_writer_error(&w), ZK_OK);
    CHECK_STR(zk_writer_result(&w), want.p);
    zk_writer_reset(&w);
    for (i = 0; i < ZK_DOC_MAX_DEPTH; i++) {
        zk_write_object(&w);
        zk_write_key(&w, "a");
    }
    zk_write_int(&w, 1);
    for (i = 0; i < ZK_DOC_MAX_DEPTH; i++) zk_write_end(&w);
    CHECK_EQ_INT(zk_writer_error(&w), ZK_OK);
    CHECK(zk_writer_result(&w).ptr != NULL);
    MISUSE(ZK_ETOOBIG, {
        for (i = 0; i <= ZK_DOC_MAX_DEPTH; i++) zk_write_array(&w);
    });
    MISUSE(ZK_ETOOBIG, {
        for (i = 0; i <= ZK_DOC_MAX_DEPTH; i++) {
            zk_write_object(&w);
            zk_write_key(&w, "a");
        }
    });
    zk_writer_free(&w);
    text_free(&want);
}

/* A sample with every kind of call and escape. */
static void write_sample(zk_writer *wr) {
    zk_write_object(wr);
    zk_write_key(wr, "name");
    zk_write_str(wr, "caf\xC3\xA9 \"q\" \\ \n\t\x01");
    zk_write_key(wr, "list");
    zk_write_array(wr);
    zk_write_int(wr, INT64_MIN);
    zk_write_double(wr, 0.1);
    zk_write_double(wr, -1e300);
    zk_write_bool(wr, 1);
    zk_write_null(wr);
    zk_write_object(wr);
    zk_write_end(wr);
    zk_write_array(wr);
    zk_write_end(wr);
    zk_write_end(wr);
    zk_write_key_n(wr, "k\0", 2);
    zk_write_str_n(wr, "\0\0", 2);
    zk_write_end(wr);
}

TEST(writer_fixed_buffer_every_size) {
    static const char zeros[4096];
    zk_str full;
    size_t n, cap;
    char *copy;
    zk_writer_init(&w, NULL, 0);
    write_sample(&w);
    full = zk_writer_result(&w);
    CHECK(full.ptr != NULL && full.len > 40);
    if (!full.ptr) return;
    n = full.len;
    copy = (char *)malloc(n);
    memcpy(copy, full.ptr, n);
    CHECK_EQ_INT(parse_n(copy, n), ZK_OK);
    CHECK_MEM(zk_value_str(zk_value_get(root(), "name")).ptr,
              zk_value_str(zk_value_get(root(), "name")).len, "caf\xC3\xA9 \"q\" \\ \n\t\x01",
              strlen("caf\xC3\xA9 \"q\" \\ \n\t\x01"));
    zk_writer_free(&w);
    for (cap = 0; cap <= n; cap++) {
        /* the buffer ends at an unmapped page: a write past cap faults */
        guard_buf g = guard_alloc(zeros, cap);
        zk_writer fw;
        zk_writer_init(&fw, (char *)g.data, cap);
        write_sample(&fw);
        if (cap < n) {
            CHECK_EQ_INT(zk_writer_error(&fw), ZK_ENOSPACE);
            CHECK(zk_writer_result(&fw).ptr == NULL && zk_writer_result(&fw).len == 0);
        } else {
            CHECK_EQ_INT(zk_writer_error(&fw), ZK_OK);
            CHECK(zk_writer_result(&fw).ptr == (const char *)g.data);
            CHECK_MEM(zk_writer_result(&fw).ptr, zk_writer_result(&fw).len, copy, n);
            /* reset keeps the caller's buffer */
            zk_writer_reset(&fw);
            zk_write_str(&fw, "x");
            CHECK_STR(zk_writer_result(&fw), "\"x\"");
            CHECK(zk_writer_result(&fw).ptr == (const char *)g.data);
        }
        zk_writer_free(&fw); /* must not free the caller's buffer */
        guard_free(&g);
    }
    free(copy);
}

TEST(writer_errors_are_sticky) {
    char small[8];
    size_t len;
    /* ENOSPACE stays the error when a misuse follows */
    zk_writer_init(&w, small, sizeof small);
    zk_write_array(&w);
    zk_write_str(&w, "far too long for eight bytes");
    CHECK_EQ_INT(zk_writer_error(&w), ZK_ENOSPACE);
    len = w.len;
    CHECK(len <= sizeof small);
    zk_write_key(&w, "k");
    zk_write_end(&w);
    zk_write_end(&w);
    zk_write_double(&w, NAN);
    zk_write_str(&w, "\xFF");
    zk_write_str_n(&w, NULL, 3);
    zk_write_key(&w, NULL);
    zk_write_value(&w, zk_value_at(root(), 1000));
    CHECK_EQ_INT(zk_writer_error(&w), ZK_ENOSPACE);
    CHECK_EQ_INT(w.len, len);
    /* and EINVAL stays when a write would overflow after it */
    zk_writer_reset(&w);
    zk_write_array(&w);
    zk_write_key(&w, "k");
    CHECK_EQ_INT(zk_writer_error(&w), ZK_EINVAL);
    len = w.len;
    zk_write_str(&w, "far too long for eight bytes");
    zk_write_double(&w, NAN);
    zk_write_end(&w);
    CHECK_EQ_INT(zk_writer_error(&w), ZK_EINVAL);
    CHECK_EQ_INT(w.len, len);
    CHECK(zk_writer_result(&w).ptr == NULL);
    zk_writer_free(&w);
    /* NaN first, then everything else is ignored */
    zk_writer_init(&w, NULL, 0);
    zk_write_array(&w);
    zk_write_int(&w, 1);
    zk_write_double(&w, NAN);
    len = w.len;
    zk_write_int(&w, 2);
    zk_write_end(&w);
    CHECK_EQ_INT(zk_writer_error(&w), ZK_EINVAL);
    CHECK_EQ_INT(w.len, len);
    CHECK(zk_writer_result(&w).ptr == NULL);
    zk_writer_free(&w);
}

TEST(writer_growable_reset_and_max) {
    text big = {0};
    zk_str r;
    int i;
    zk_writer_init(&w, NULL, 0);
    /* grows from nothing to over a megabyte */
    text_rep(&big, "0123456789abcdef", 1u << 16);
    zk_write_array(&w);
    for (i = 0; i < 1000; i++) zk_write_int(&w, i);
    zk_write_str_n(&w, big.p, big.len);
    zk_write_end(&w);
    r = zk_writer_result(&w);
    CHECK_EQ_INT(zk_writer_error(&w), ZK_OK);
    CHECK(r.ptr != NULL);
    if (r.ptr) {
        CHECK_EQ_INT(parse_n(r.ptr, r.len), ZK_OK);
        CHECK_EQ_INT(zk_value_len(root()), 1001);
        CHECK_EQ_INT(zk_value_int(zk_value_at(root(), 999), 0), 999);
        CHECK_EQ_INT(zk_value_len(zk_value_at(root(), 1000)), big.len);
    }
    /* reset: small values in the same buffer, many times */
    for (i = 0; i < 100; i++) {
        zk_writer_reset(&w);
        zk_write_array(&w);
        zk_write_int(&w, i);
        zk_write_end(&w);
        CHECK_EQ_INT(zk_writer_result(&w).len, i < 10 ? 3 : 4);
    }
    CHECK_STR(zk_writer_result(&w), "[99]");
    zk_writer_free(&w);
    /* a growable writer stops at max */
    zk_writer_init(&w, NULL, 0);
    w.max = 64;
    zk_write_str_n(&w, big.p, 40);
    CHECK_EQ_INT(zk_writer_error(&w), ZK_OK);
    CHECK_EQ_INT(zk_writer_result(&w).len, 42);
    zk_writer_reset(&w);
    zk_write_str_n(&w, big.p, 100);
    CHECK(zk_writer_error(&w) == ZK_ENOSPACE || zk_writer_error(&w) == ZK_ETOOBIG);
    CHECK(zk_writer_result(&w).ptr == NULL);
    zk_writer_free(&w);
    /* free, then init again */
    zk_writer_init(&w, NULL, 0);
    zk_write_bool(&w, 1);
    CHECK_STR(zk_writer_result(&w), "true");
    zk_writer_free(&w);
    text_free(&big);
}

/* ============================ round trips ============================ */

static int64_t rnd_int(void) {
    uint64_t u = rnd();
    int64_t v;
    switch (u % 5) {
    case 0: return (int64_t)(u >> 40) - (1 << 23);
    case 1: return u & 8 ? INT64_MAX : INT64_MIN;
    case 2: return (int64_t)(u >> 60);
    default: memcpy(&v, &u, sizeof v); return v;
    }
}

static double rnd_double(void) {
    static const double special[] = {
        0.0, -0.0, DBL_MAX, -DBL_MAX, DBL_MIN, -DBL_MIN, 4.9406564584124654e-324,
        -4.9406564584124654e-324, 2.2250738585072009e-308, 0.1, 0.2, 0.3, 1.0 / 3, 2.0 / 3,
        1e22, 1e23, 9007199254740993.0, 123456.789, 0.5, 1.0, -1.0, 100.0, 1e21, 1e-7,
        9223372036854775808.0, -9223372036854775808.0, 5e-324, 1.7976931348623157e308,
        8.98846567431158e307, 2.2250738585072014e-308, 1e15, 1e16, 1e17, 123e-20,
    };
    uint64_t u = rnd();
    double d;
    switch (u % 5) {
    case 0: return special[(u >> 8) % COUNT(special)];
    case 1: /* subnormal, either sign */
        d = bits_double(((u >> 3) & UINT64_C(0x800FFFFFFFFFFFFF)) | 1);
        return d;
    case 2: return (double)((int64_t)(u >> 44) - (1 << 19)) / (double)(1 << ((u >> 3) % 12));
    default:
        for (;;) {
            u = rnd();
            if ((u & UINT64_C(0x7FF0000000000000)) != UINT64_C(0x7FF0000000000000))
                return bits_double(u);
        }
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

/* Up to 24 characters of every kind: ASCII, the bytes JSON escapes, NUL,
   DEL, and code points of each UTF-8 length (no surrogates). Needs 96 bytes. */
static size_t rnd_string(char *out) {
    size_t n = 0, count = rnd() % 25, i;
    for (i = 0; i < count; i++) {
        uint64_t u = rnd();
        uint32_t cp;
        switch (u % 8) {
        case 0: cp = (uint32_t)(u >> 8) % 0x20; break;
        case 1: cp = "\"\\/\x7F"[(u >> 8) % 4]; break;
        case 2: cp = 0x80 + (uint32_t)(u >> 8) % (0x800 - 0x80); break;
        case 3:
            cp = 0x800 + (uint32_t)(u >> 8) % (0x10000 - 0x800);
            if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0x2028;
            break;
        case 4: cp = 0x10000 + (uint32_t)(u >> 8) % (0x110000 - 0x10000); break;
        default: cp = 0x20 + (uint32_t)(u >> 8) % 0x5F; break;
        }
        n += utf8_put(out + n, cp);
    }
    return n;
}

/* A random value of up to depth 4 (objects have distinct keys). */
static void gen_value(zk_writer *wr, int depth) {
    char s[128];
    size_t n, i, count;
    switch (rnd() % (depth < 4 ? 10 : 6)) {
    case 0: zk_write_null(wr); break;
    case 1: zk_write_bool(wr, (int)(rnd() & 1)); break;
    case 2: zk_write_int(wr, rnd_int()); break;
    case 3: zk_write_double(wr, rnd_double()); break;
    case 4:
    case 5:
        n = rnd_string(s);
        zk_write_str_n(wr, s, n);
        break;
    case 6:
    case 7:
        zk_write_array(wr);
        for (i = 0, count = rnd() % 6; i < count; i++) gen_value(wr, depth + 1);
        zk_write_end(wr);
        break;
    default:
        zk_write_object(wr);
        for (i = 0, count = rnd() % 6; i < count; i++) {
            n = (size_t)snprintf(s, sizeof s, "k%zu_", i);
            n += rnd_string(s + n);
            zk_write_key_n(wr, s, n);
            gen_value(wr, depth + 1);
        }
        zk_write_end(wr);
        break;
    }
}

TEST(round_trip_doubles_bit_identical) {
    zk_writer_init(&w, NULL, 0);
    rng_state = 12345;
    {
        int i, bad = 0;
        for (i = 0; i < 1000; i++) {
            double d = rnd_double();
            zk_str r;
            int before = test__failed_checks;
            zk_writer_reset(&w);
            zk_write_double(&w, d);
            r = zk_writer_result(&w);
            CHECK_EQ_INT(zk_writer_error(&w), ZK_OK);
            CHECK(r.ptr != NULL);
            if (!r.ptr) continue;
            CHECK_EQ_INT(parse_n(r.ptr, r.len), ZK_OK);
            CHECK(double_bits(zk_value_double(root(), 1.0)) == double_bits(d));
            /* written as a double, read back as a double */
            CHECK_EQ_INT(zk_value_type(root()), ZK_TYPE_DOUBLE);
            if (test__failed_checks != before && bad++ < 5)
                printf("    %.17g (0x%016llX) written as %.*s, read back as %s %.17g\n", d,
                       (unsigned long long)double_bits(d), (int)r.len, r.ptr,
                       zk_type_name(zk_value_type(root())), zk_value_double(root(), 0));
        }
    }
    zk_writer_free(&w);
}

TEST(round_trip_random_documents) {
    zk_writer w2;
    zk_doc d1 = {0}, d2 = {0};
    int i, reported = 0;
    rng_state = 777;
    zk_writer_init(&w, NULL, 0);
    zk_writer_init(&w2, NULL, 0);
    for (i = 0; i < 500; i++) {
        zk_str r1, r2;
        char *b1, *b2;
        int before = test__failed_checks;
        zk_writer_reset(&w);
        gen_value(&w, 0);
        r1 = zk_writer_result(&w);
        CHECK_EQ_INT(zk_writer_error(&w), ZK_OK);
        if (!r1.ptr) continue;
        b1 = (char *)malloc(r1.len + 1);
        memcpy(b1, r1.ptr, r1.len);
        CHECK_EQ_INT(zk_json_parse(&d1, b1, r1.len), ZK_OK);
        zk_writer_reset(&w2);
        zk_write_value(&w2, zk_doc_root(&d1));
        r2 = zk_writer_result(&w2);
        CHECK_EQ_INT(zk_writer_error(&w2), ZK_OK);
        CHECK(r2.ptr != NULL);
        if (r2.ptr) {
            CHECK_MEM(r2.ptr, r2.len, r1.ptr, r1.len);
            b2 = (char *)malloc(r2.len + 1);
            memcpy(b2, r2.ptr, r2.len);
            CHECK_EQ_INT(zk_json_parse(&d2, b2, r2.len), ZK_OK);
            CHECK(same_value(zk_doc_root(&d1), zk_doc_root(&d2)));
            free(b2);
        }
        if (test__failed_checks != before && reported++ < 3) {
            printf("    document %d: ", i);
            show(r1.ptr, r1.len);
            printf("\n    rewritten:   ");
            if (r2.ptr) show(r2.ptr, r2.len);
            printf("\n");
        }
        free(b1);
    }
    zk_writer_free(&w);
    zk_writer_free(&w2);
    zk_doc_free(&d1);
    zk_doc_free(&d2);
}

TEST(write_value_copies_exactly) {
    static const char canonical[] =
        "{\"a\":[1,-2,3.5,true,false,null,\"x\"],\"b\":{},\"c\":[],\"d\":\"\",\"e\":{\"f\":[[{}]]},"
        "\"g\":-9223372036854775808,\"h\":\"caf\xC3\xA9\\\\\\\"\\n\\u0000\"}";
    static const char escaped[] =
        "[\"\\u00e9\\ud83d\\ude00\\/\\b\\f\\r\\t\",1.0,1e2,-0.0,0.1,5e-324,1.7976931348623157e308,"
        "{\"\\u0041\":1,\"A\":2},9223372036854775808]";
    zk_doc d2 = {0};
    zk_str r;
    char *copy;
    zk_writer_init(&w, NULL, 0);
    /* a compact document in the writer's own style comes back byte for byte */
    CHECK_EQ_INT(parse(canonical), ZK_OK);
    zk_write_value(&w, root());
    CHECK_EQ_INT(zk_writer_error(&w), ZK_OK);
    CHECK_STR(zk_writer_result(&w), canonical);
    /* other spellings come back as the same values and types */
    CHECK_EQ_INT(parse(escaped), ZK_OK);
    zk_writer_reset(&w);
    zk_write_value(&w, root());
    r = zk_writer_result(&w);
    CHECK(r.ptr != NULL);
    if (r.ptr) {
        copy = (char *)malloc(r.len);
        memcpy(copy, r.ptr, r.len);
        CHECK_EQ_INT(zk_json_parse(&d2, copy, r.len), ZK_OK);
        CHECK(same_value(root(), zk_doc_root(&d2)));
        if (!same_value(root(), zk_doc_root(&d2))) {
            printf("    written as ");
            show(r.ptr, r.len);
            printf("\n");
        }
        free(copy);
    }
    /* an inner value, as a member of a new object */
    CHECK_EQ_INT(parse("{\"x\":[1,{\"y\":\"z\"}],\"w\":0}"), ZK_OK);
    zk_writer_reset(&w);
    zk_write_object(&w);
    zk_write_key(&w, "copy");
    zk_write_value(&w, zk_value_get(root(), "x"));
    zk_write_key(&w, "s");
    zk_write_value(&w, zk_value_path(root(), "x[1].y"));
    zk_write_end(&w);
    CHECK_STR(zk_writer_result(&w), "{\"copy\":[1,{\"y\":\"z\"}],\"s\":\"z\"}");
    /* a value in an object still needs a key */
    zk_writer_reset(&w);
    zk_write_object(&w);
    zk_write_value(&w, root());
    CHECK_EQ_INT(zk_writer_error(&w), ZK_EINVAL);
    zk_writer_free(&w);
    zk_doc_free(&d2);
}

/* ================ cross-check: Python's json module ================== */

static const char python_script[] =
    "import json, sys\n"
    "out = sys.stdout.buffer\n"
    "for line in open(sys.argv[1], \"rb\").read().split(b\"\\n\"):\n"
    "    if line:\n"
    "        v = json.loads(line.decode(\"utf-8\"))\n"
    "        out.write(json.dumps(v, ensure_ascii=False, separators=(\",\", \":\")).encode(\"utf-8\") + b\"\\n\")\n";

TEST(cross_check_with_python) {
    enum { DOCS = 200 };
    char path[] = "/tmp/zk_test_json_XXXXXX";
    char cmd[1024];
    char *lines[DOCS];
    size_t lens[DOCS];
    text out = {0};
    zk_doc d1 = {0}, d2 = {0};
    FILE *f, *p;
    int fd, i, status, reported = 0;
    size_t start, got;
    char chunk[4096];
    if (access("/usr/bin/python3", X_OK) != 0) {
        /* like tests/run.sh: under CI=true a missing dependency is a failure */
        const char *ci = getenv("CI");
        printf("  note: /usr/bin/python3 not found: cross_check_with_python skipped\n");
        CHECK(!(ci && strcmp(ci, "true") == 0));
        return;
    }
    fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    f = fdopen(fd, "w");
    rng_state = 2024;
    zk_writer_init(&w, NULL, 0);
    for (i = 0; i < DOCS; i++) {
        zk_str r;
        zk_writer_reset(&w);
        gen_value(&w, 0);
        r = zk_writer_result(&w);
        CHECK(r.ptr != NULL);
        lens[i] = r.ptr ? r.len : 4;
        lines[i] = (char *)malloc(lens[i] + 1);
        memcpy(lines[i], r.ptr ? r.ptr : "null", lens[i]);
        fwrite(lines[i], 1, lens[i], f);
        fputc('\n', f);
    }
    zk_writer_free(&w);
    fclose(f);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c '%s' %s", python_script, path);
    fflush(stdout);
    p = popen(cmd, "r");
    CHECK(p != NULL);
    if (p) {
        while ((got = fread(chunk, 1, sizeof chunk, p)) > 0) text_add(&out, chunk, got);
        status = pclose(p);
        CHECK_EQ_INT(status, 0);
    }
    unlink(path);
    for (i = 0, start = 0; i < DOCS && start < out.len; i++) {
        char *nl = (char *)memchr(out.p + start, '\n', out.len - start);
        size_t n = nl ? (size_t)(nl - out.p) - start : out.len - start;
        int before = test__failed_checks;
        CHECK_EQ_INT(zk_json_parse(&d1, lines[i], lens[i]), ZK_OK);
        CHECK_EQ_INT(zk_json_parse(&d2, out.p + start, n), ZK_OK);
        CHECK(same_value(zk_doc_root(&d1), zk_doc_root(&d2)));
        if (test__failed_checks != before && reported++ < 3) {
            printf("    zocket: ");
            show(lines[i], lens[i]);
            printf("\n    python: ");
            show(out.p + start, n);
            printf("\n");
        }
        start += n + 1;
    }
    CHECK_EQ_INT(i, DOCS);
    for (i = 0; i < DOCS; i++) free(lines[i]);
    text_free(&out);
    zk_doc_free(&d1);
    zk_doc_free(&d2);
}

int main(void) {
    RUN(fresh_doc_root_is_none);
    RUN(every_type_as_root);
    RUN(type_names);
    RUN(nesting);
    RUN(white_space_everywhere_allowed_and_nowhere_else);
    RUN(numbers);
    RUN(getters_convert_and_default);
    RUN(string_escapes);
    RUN(string_special_byte_at_every_offset);
    RUN(string_of_1_mib_decoded_in_place);
    RUN(duplicate_keys_and_lookup);
    RUN(array_at);
    RUN(paths);
    RUN(iteration_and_keys);
    RUN(invalid_trailing_commas);
    RUN(invalid_numbers);
    RUN(invalid_literals);
    RUN(invalid_quotes_keys_comments);
    RUN(invalid_escapes);
    RUN(invalid_lone_surrogates);
    RUN(invalid_utf8);
    RUN(invalid_unterminated);
    RUN(invalid_structure);
    RUN(invalid_two_top_level_values);
    RUN(invalid_empty_blank_and_nul);
    RUN(invalid_raw_control_characters);
    RUN(depth_limit);
    RUN(depth_limit_custom);
    RUN(depth_100000_refused_without_recursion);
    RUN(node_limit);
    RUN(node_limit_counts_values_and_keys);
    RUN(node_limit_lowered_on_a_reused_doc);
    RUN(null_buffer_is_empty_input);
    RUN(one_doc_many_documents);
    RUN(guard_page_every_prefix);
    RUN(out_of_memory);
    RUN(writer_each_call);
    RUN(writer_escaping);
    RUN(writer_refuses_invalid_utf8_nan_and_infinity);
    RUN(writer_structure_misuse);
    RUN(writer_depth_limit);
    RUN(writer_fixed_buffer_every_size);
    RUN(writer_errors_are_sticky);
    RUN(writer_growable_reset_and_max);
    RUN(round_trip_doubles_bit_identical);
    RUN(round_trip_random_documents);
    RUN(write_value_copies_exactly);
    RUN(cross_check_with_python);
    zk_doc_free(&doc);
    free(doc_buf);
    return test_summary();
}
