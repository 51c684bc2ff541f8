/* libFuzzer harness for the JSON reader (zk_json_parse and the zk_value
   getters) and the writer (zk_writer, zk_write_value).

   Input: byte 0 picks the limits of one parse, the bytes after it up to
   the first 0xFF (or the end) are a JSON text, and the bytes after that
   0xFF, if any, are writer commands.
     bits 0-5   max_depth - 1 (1..64)
     bits 6-7   max_nodes: default (0), 3, 16, 200

   Part 1, reading. Every parse reads a malloc'd copy of exactly the text
   (the parser decodes escapes in place, and ASan catches a read past the
   end). The text is parsed with the default limits into a static doc,
   then with the limits of byte 0 twice: into a static doc that has just
   held the same text with the default limits (a reused doc whose node
   array is already large: the same on every run of the input, so a crash
   reproduces from the input alone) and into a new doc, freed after. The
   static docs (and writers) are reused from input to input, their limits
   changing, and freed at exit. Aborts when:
   - a parse returns anything but ZK_OK, ZK_EPARSE (then doc.error is set
     and error_at <= length) or ZK_ETOOBIG, or a failed parse leaves a
     root that is not ZK_TYPE_NONE;
   - a parsed tree does not hold up when walked with first/next/key/len/
     at/get_n/get/path: counts agree, zk_value_at(i) is the i-th element,
     zk_value_get_n and zk_value_get find the first member of that name,
     zk_value_path finds each value by its path, every string and key is
     valid UTF-8 and lies inside the parsed buffer, the typed getters
     agree with zk_value_type, and the tree is within the limits;
   - the limited parses disagree with the default one: on a text that
     parses, ZK_ETOOBIG exactly when the tree is deeper than max_depth or
     has more nodes (values and keys) than max_nodes, else an equal tree;
     on a malformed text the same error at the same byte, or ZK_ETOOBIG;
     and ZK_ETOOBIG only when the text, scanned on its own, nests that
     deep or holds that many tokens;
   - the round trip fails: zk_write_value of the root into a growable
     writer succeeds, its output is valid UTF-8 and parses again to an
     equal tree (same types, numbers bit for bit, same strings and keys)
     whose output is byte-identical (a fixed point).

   Part 2, writing. The command bytes drive three writers at once with
   the same calls: a fixed 4 KiB malloc'd buffer, a growable one and a
   growable one with max 4096. Commands: object, array, end, key and
   string (length-delimited or NUL-terminated, bytes from the input, so
   possibly invalid UTF-8; a NULL string), integers (raw 8 bytes, small,
   extremes), doubles (raw 8 bytes, so NaN and infinities, and a table
   of edge values), bool, null, reset, and zk_write_value of the parsed
   root. Whatever the sequence, zk_writer_result is {NULL, 0} or one
   complete document that zk_json_parse accepts. A model of the writer's
   rules (keys only before object members, one root value, containers
   closed, depth, NaN and infinities refused) predicts whether there is a
   result and the first error (an invalid UTF-8 string or key may be
   refused with ZK_EINVAL or written repaired); the parsed result must
   give back exactly the values written; the fixed and bounded writers
   must agree with the growable one (the same bytes when the result fits
   in 4096 bytes, else ZK_ENOSPACE or ZK_ETOOBIG).
   A command is a byte, low nibble the call, high nibble an argument:
     0 object   1 array   2 end   3 key_n, 4 str_n: next (argument) bytes
     5 NUL-terminated: argument bit 3 key (else string), bits 0-2 length;
       15: zk_write_str(NULL)
     6 int from 8 bytes   7 int from 1 signed byte   8 int extremes
     9 double from 8 bytes   10 double from a table (14 NaN, 15 -inf)
     11 bool   12 null   13 zk_write_value(parsed root), up to 4 times
       (else end)   14 reset when argument 0, else end   15 array */
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c) do { if (!(c)) { \
    fprintf(stderr, "fuzz_json: invariant broken at line %d: %s\n", __LINE__, #c); \
    abort(); } } while (0)

#define FIXED_CAP 4096
#define MAX_DEPTH ZK_DOC_MAX_DEPTH

static const uint32_t node_limits[4] = {0, 3, 16, 200};

static zk_doc doc_def, doc_lim, doc_again; /* reused from input to input */
static zk_writer out1, out2, grow, bounded;

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
    if (t != ZK_TYPE_STRING) CHECK(s.ptr == NULL && s.len == 0);
    if (t != ZK_TYPE_STRING && t != ZK_TYPE_ARRAY && t != ZK_TYPE_OBJECT) CHECK(zk_value_len(v) == 0);
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
    CHECK(t >= ZK_TYPE_NULL && t <= ZK_TYPE_OBJECT && t != ZK_TYPE_BINARY);
    CHECK(v.doc == w->doc);
    CHECK(strcmp(zk_type_name(t), type_names[t]) == 0);
    w->values++;
    CHECK(w->values <= w->len + 1);
    check_getters(v, t);
    if (pok && plen) CHECK(same_handle(zk_value_path(w->root, w->path), v));
    if (t == ZK_TYPE_STRING) {
        zk_str s = zk_value_str(v);
        check_view(s, w->buf, w->len);
        CHECK(zk_value_len(v) == s.len);
        CHECK(zk_utf8_valid(s.ptr, s.len));
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
            CHECK(zk_utf8_valid(k.ptr, k.len));
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
        /* no key holds 0xFF (not UTF-8) */
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

/* Same types, numbers bit for bit, same strings and keys. */
static void same_tree(zk_value a, zk_value b) {
    int t = zk_value_type(a);
    CHECK(t == zk_value_type(b));
    switch (t) {
    case ZK_TYPE_BOOL:
        CHECK(zk_value_bool(a, 0) == zk_value_bool(b, 0));
        break;
    case ZK_TYPE_INT:
        CHECK(zk_value_int(a, 0) == zk_value_int(b, 0));
        break;
    case ZK_TYPE_DOUBLE:
        CHECK(bits_of(zk_value_double(a, 0)) == bits_of(zk_value_double(b, 0)));
        break;
    case ZK_TYPE_STRING:
        CHECK(same_str(zk_value_str(a), zk_value_str(b)));
        break;
    case ZK_TYPE_ARRAY:
    case ZK_TYPE_OBJECT: {
        zk_value x = zk_value_first(a), y = zk_value_first(b);
        CHECK(zk_value_len(a) == zk_value_len(b));
        for (; zk_value_type(x); x = zk_value_next(x), y = zk_value_next(y)) {
            if (t == ZK_TYPE_OBJECT) CHECK(same_str(zk_value_key(x), zk_value_key(y)));
            same_tree(x, y);
        }
        CHECK(zk_value_type(y) == ZK_TYPE_NONE);
        break;
    }
    default:
        break;
    }
}

/* ---- an independent scan of the text, for ZK_ETOOBIG ---- */

/* Bracket nesting outside strings, and tokens (containers, strings, runs
   of other characters): upper bounds of what any prefix of the text can
   hold as a valid JSON prefix. */
static void scan(const char *s, size_t n, uint32_t *nest, size_t *tokens) {
    size_t i;
    uint32_t d = 0;
    int in_run = 0;
    *nest = 0;
    *tokens = 0;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (c == '"') {
            (*tokens)++;
            in_run = 0;
            for (i++; i < n && s[i] != '"'; i++)
                if (s[i] == '\\') i++;
        } else if (c == '[' || c == '{') {
            (*tokens)++;
            in_run = 0;
            if (++d > *nest) *nest = d;
        } else if (c == ']' || c == '}') {
            in_run = 0;
            if (d) d--;
        } else if (c == ',' || c == ':' || c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            in_run = 0;
        } else if (!in_run) {
            (*tokens)++;
            in_run = 1;
        }
    }
}

/* ---- part 1: reading ---- */

static void check_error(const zk_doc *doc, int rc, size_t n) {
    CHECK(rc == ZK_OK || rc == ZK_EPARSE || rc == ZK_ETOOBIG);
    if (rc == ZK_EPARSE) {
        CHECK(doc->error != NULL && doc->error[0] != '\0');
        CHECK(doc->error_at <= n);
    }
}

/* Writes the tree, parses the output again, writes that: the two outputs
   are the same bytes and the two trees are equal. */
static void round_trip(zk_value root) {
    zk_str r1, r2;
    char *p;
    int rc;
    walk w;
    zk_writer_reset(&out1);
    zk_write_value(&out1, root);
    CHECK(zk_writer_error(&out1) == ZK_OK);
    r1 = zk_writer_result(&out1);
    CHECK(r1.ptr != NULL && r1.len > 0);
    CHECK(zk_utf8_valid(r1.ptr, r1.len));
    p = copy_exact(r1.ptr, r1.len);
    rc = zk_json_parse(&doc_again, p, r1.len);
    if (rc != ZK_OK) {
        fprintf(stderr, "fuzz_json: writer output does not parse (%s at %lu): %.*s\n",
                doc_again.error ? doc_again.error : "?", (unsigned long)doc_again.error_at,
                (int)r1.len, r1.ptr);
        CHECK(rc == ZK_OK);
    }
    walk_doc(&w, &doc_again, p, r1.len);
    same_tree(root, zk_doc_root(&doc_again));
    zk_writer_reset(&out2);
    zk_write_value(&out2, zk_doc_root(&doc_again));
    r2 = zk_writer_result(&out2);
    CHECK(zk_writer_error(&out2) == ZK_OK);
    CHECK(same_str(r1, r2));
    free(p);
}

/* The limited parse gave rc into doc (from buf, which it may have changed:
   strings are unescaped in place; text is the input as it came); the
   default one gave rd and, when it parsed, the tree in *def. */
static void check_limited(const zk_doc *doc, int rc, char *buf, const char *text, size_t n, uint32_t max_depth,
                          uint32_t max_nodes, int rd, const walk *def) {
    uint32_t nest;
    size_t tokens;
    walk w;
    check_error(doc, rc, n);
    if (rc != ZK_OK) CHECK(zk_value_type(zk_doc_root(doc)) == ZK_TYPE_NONE);
    if (rc == ZK_ETOOBIG) {
        /* + 1: the parser takes a node for a value before it has seen
           that the value is not there ("[1,2,]" is ZK_ETOOBIG with
           max_nodes 3, ZK_EPARSE with 4) */
        scan(text, n, &nest, &tokens);
        CHECK(nest > max_depth || tokens + 1 > max_nodes);
    }
    if (rd == ZK_OK) {
        /* keys are nodes too */
        int too_big = def->nest > max_depth || def->values + def->keys > max_nodes;
        if (rc != (too_big ? ZK_ETOOBIG : ZK_OK)) {
            fprintf(stderr, "fuzz_json: limits depth %lu nodes %lu, tree depth %lu nodes %lu: %s\n",
                    (unsigned long)max_depth, (unsigned long)max_nodes, (unsigned long)def->nest,
                    (unsigned long)(def->values + def->keys), zk_err_name(rc));
            CHECK(rc == (too_big ? ZK_ETOOBIG : ZK_OK));
        }
        if (rc == ZK_OK) {
            walk_doc(&w, doc, buf, n);
            same_tree(def->root, w.root);
        }
    } else if (rd == ZK_EPARSE) {
        CHECK(rc == ZK_EPARSE || rc == ZK_ETOOBIG);
        if (rc == ZK_EPARSE)
            CHECK(doc->error_at == doc_def.error_at && strcmp(doc->error, doc_def.error) == 0);
    } else {
        CHECK(rc == ZK_ETOOBIG);
    }
}

/* Returns 1 when the text parsed with the default limits (then *def_buf
   stays allocated, for part 2, and *def describes the tree). */
static int read_json(const uint8_t *text, size_t n, uint8_t cfg, char **def_buf, walk *def) {
    uint32_t max_depth = 1 + (cfg & 63), max_nodes = node_limits[cfg >> 6];
    uint32_t nest;
    size_t tokens;
    char *bd = copy_exact(text, n), *bl;
    zk_doc fresh;
    int rd, rl;

    doc_def.max_depth = 0;
    doc_def.max_nodes = 0;
    rd = zk_json_parse(&doc_def, bd, n);
    check_error(&doc_def, rd, n);
    if (rd != ZK_OK) CHECK(zk_value_type(zk_doc_root(&doc_def)) == ZK_TYPE_NONE);
    if (rd == ZK_ETOOBIG) {
        scan((const char *)text, n, &nest, &tokens);
        CHECK(nest > MAX_DEPTH || tokens + 1 > ZK_DOC_MAX_NODES);
    }
    if (rd == ZK_OK) {
        walk_doc(def, &doc_def, bd, n);
        CHECK(def->nest <= MAX_DEPTH && def->values + def->keys <= ZK_DOC_MAX_NODES);
        round_trip(def->root);
    }

    /* The limited parse, into a reused doc that has just held this text
       with the default limits (so whatever ran before, its node array is
       large enough for this text: a crash reproduces from one input)... */
    bl = copy_exact(text, n);
    doc_lim.max_depth = 0;
    doc_lim.max_nodes = 0;
    CHECK(zk_json_parse(&doc_lim, bl, n) == rd);
    if (rd == ZK_EPARSE) CHECK(doc_lim.error_at == doc_def.error_at);
    free(bl);
    bl = copy_exact(text, n);
    doc_lim.max_depth = max_depth;
    doc_lim.max_nodes = max_nodes;
    rl = zk_json_parse(&doc_lim, bl, n);
    check_limited(&doc_lim, rl, bl, (const char *)text, n, max_depth, max_nodes ? max_nodes : ZK_DOC_MAX_NODES, rd, def);
    free(bl);
    /* ...and into a new one */
    bl = copy_exact(text, n);
    zk_doc_init(&fresh);
    fresh.max_depth = max_depth;
    fresh.max_nodes = max_nodes;
    rl = zk_json_parse(&fresh, bl, n);
    check_limited(&fresh, rl, bl, (const char *)text, n, max_depth, max_nodes ? max_nodes : ZK_DOC_MAX_NODES, rd, def);
    zk_doc_free(&fresh);
    free(bl);

    if (rd == ZK_OK) {
        /* paths from the fuzzer: whatever they say, no crash */
        char path[48];
        size_t k = n < sizeof path - 1 ? n : sizeof path - 1;
        memcpy(path, text, k);
        path[k] = '\0';
        (void)zk_value_type(zk_value_path(def->root, path));
        *def_buf = bd;
    } else {
        free(bd);
    }
    return rd == ZK_OK;
}

/* ---- part 2: writing ---- */

enum { EV_OBJECT = 1, EV_ARRAY, EV_END, EV_KEY, EV_STR, EV_INT, EV_DOUBLE, EV_BOOL, EV_NULL };

typedef struct event {
    int kind;
    zk_str s;       /* EV_KEY, EV_STR */
    int64_t i;      /* EV_INT, EV_BOOL */
    uint64_t bits;  /* EV_DOUBLE */
} event;

typedef struct events {
    event *e;
    size_t n, cap;
} events;

static void ev_add(events *l, int kind, zk_str s, int64_t i, uint64_t bits) {
    event *e;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->e = (event *)realloc(l->e, l->cap * sizeof *l->e);
        CHECK(l->e != NULL);
    }
    e = &l->e[l->n++];
    e->kind = kind;
    e->s = s;
    e->i = i;
    e->bits = bits;
}

static void ev_simple(events *l, int kind) {
    zk_str none = {NULL, 0};
    ev_add(l, kind, none, 0, 0);
}

/* The value as the calls that would write it. */
static void flatten(events *l, zk_value v) {
    zk_str none = {NULL, 0};
    zk_value e;
    int t = zk_value_type(v);
    switch (t) {
    case ZK_TYPE_NULL: ev_simple(l, EV_NULL); break;
    case ZK_TYPE_BOOL: ev_add(l, EV_BOOL, none, zk_value_bool(v, 0), 0); break;
    case ZK_TYPE_INT: ev_add(l, EV_INT, none, zk_value_int(v, 0), 0); break;
    case ZK_TYPE_DOUBLE: ev_add(l, EV_DOUBLE, none, 0, bits_of(zk_value_double(v, 0))); break;
    case ZK_TYPE_STRING: ev_add(l, EV_STR, zk_value_str(v), 0, 0); break;
    case ZK_TYPE_ARRAY:
    case ZK_TYPE_OBJECT:
        ev_simple(l, t == ZK_TYPE_ARRAY ? EV_ARRAY : EV_OBJECT);
        for (e = zk_value_first(v); zk_value_type(e); e = zk_value_next(e)) {
            if (t == ZK_TYPE_OBJECT) ev_add(l, EV_KEY, zk_value_key(e), 0, 0);
            flatten(l, e);
        }
        ev_simple(l, EV_END);
        break;
    default:
        CHECK(0);
    }
}

/* What the writer's rules allow. */
typedef struct model {
    uint32_t depth;
    unsigned char object[MAX_DEPTH + 1];     /* per level: 1 object, 0 array */
    unsigned char want_value[MAX_DEPTH + 1]; /* per level: an object has its key */
    int root_done;
    int err;          /* the first refused call's error */
    int bad_utf8;     /* an invalid UTF-8 string or key was given before err */
    events ev;        /* what was written, since the last reset */
} model;

static void model_reset(model *m) {
    events ev = m->ev;
    memset(m, 0, sizeof *m);
    m->ev = ev;
    m->ev.n = 0;
}

static void model_fail(model *m, int err) {
    if (!m->err) m->err = err;
}

/* A value of nest levels of containers may start here. */
static int model_value(model *m, uint32_t nest) {
    if (m->err) return 0;
    if (m->root_done || (m->depth > 0 && m->object[m->depth - 1] && !m->want_value[m->depth - 1])) {
        model_fail(m, ZK_EINVAL);
        return 0;
    }
    if (m->depth + nest > MAX_DEPTH) {
        model_fail(m, ZK_ETOOBIG);
        return 0;
    }
    return 1;
}

/* A scalar value (or a whole container) has been written. */
static void model_done(model *m) {
    if (m->depth == 0) m->root_done = 1;
    else m->want_value[m->depth - 1] = 0;
}

static void model_open(model *m, int object) {
    if (!model_value(m, 1)) return;
    m->object[m->depth] = (unsigned char)object;
    m->want_value[m->depth] = 0;
    m->depth++;
    ev_simple(&m->ev, object ? EV_OBJECT : EV_ARRAY);
}

static void model_end(model *m) {
    if (m->err) return;
    if (m->depth == 0 || (m->object[m->depth - 1] && m->want_value[m->depth - 1])) {
        model_fail(m, ZK_EINVAL);
        return;
    }
    m->depth--;
    model_done(m);
    ev_simple(&m->ev, EV_END);
}

static void model_key(model *m, zk_str k) {
    if (m->err) return;
    if (m->depth == 0 || !m->object[m->depth - 1] || m->want_value[m->depth - 1]) {
        model_fail(m, ZK_EINVAL);
        return;
    }
    if (!zk_utf8_valid(k.ptr, k.len)) m->bad_utf8 = 1;
    m->want_value[m->depth - 1] = 1;
    ev_add(&m->ev, EV_KEY, k, 0, 0);
}

static void model_scalar(model *m, int kind, zk_str s, int64_t i, double d) {
    if (!model_value(m, 0)) return;
    if (kind == EV_DOUBLE && (isnan(d) || isinf(d))) {
        model_fail(m, ZK_EINVAL);
        return;
    }
    if (kind == EV_STR && !zk_utf8_valid(s.ptr, s.len)) m->bad_utf8 = 1;
    ev_add(&m->ev, kind, s, i, bits_of(d));
    model_done(m);
}

static const double edge_doubles[14] = {
    0.0, -0.0, 0.5, 1.0, -1.5, 0.1, 100.0, 1e21, DBL_MAX, DBL_MIN, 5e-324,
    123456789012345678.0, 9223372036854775808.0, 1.0 / 3.0};
static const int64_t edge_ints[4] = {INT64_MIN, INT64_MAX, 0, -1};

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

#define ALL(call) do { int k_; for (k_ = 0; k_ < 3; k_++) { zk_writer *w = ws[k_]; call; } } while (0)

static void check_written(const model *m, zk_str r) {
    char *p = copy_exact(r.ptr, r.len);
    events got = {NULL, 0, 0};
    size_t i;
    int rc = zk_json_parse(&doc_again, p, r.len);
    if (rc != ZK_OK) {
        fprintf(stderr, "fuzz_json: writer result does not parse (%s at %lu): %.*s\n",
                doc_again.error ? doc_again.error : "?", (unsigned long)doc_again.error_at,
                (int)r.len, r.ptr);
        CHECK(rc == ZK_OK);
    }
    flatten(&got, zk_doc_root(&doc_again));
    CHECK(got.n == m->ev.n);
    for (i = 0; i < got.n; i++) {
        const event *a = &m->ev.e[i], *b = &got.e[i];
        CHECK(a->kind == b->kind);
        if (a->kind == EV_INT || a->kind == EV_BOOL) CHECK(a->i == b->i);
        if (a->kind == EV_DOUBLE) CHECK(a->bits == b->bits);
        /* an invalid UTF-8 string may come back repaired */
        if ((a->kind == EV_STR || a->kind == EV_KEY) && zk_utf8_valid(a->s.ptr, a->s.len))
            CHECK(same_str(a->s, b->s));
    }
    free(got.e);
    free(p);
}

static model m; /* its event array is reused */

static void write_commands(const uint8_t *cmd, size_t n, int have_root, const walk *parsed) {
    char *fixed = (char *)malloc(FIXED_CAP);
    zk_writer fw;
    zk_writer *ws[3];
    reader r;
    zk_str none = {NULL, 0}, rf, rg, rb;
    int write_values = 0, ef, eg, eb;
    CHECK(fixed != NULL);
    zk_writer_init(&fw, fixed, FIXED_CAP);
    zk_writer_reset(&grow);
    zk_writer_reset(&bounded);
    bounded.max = FIXED_CAP;
    ws[0] = &fw;
    ws[1] = &grow;
    ws[2] = &bounded;
    model_reset(&m);
    r.p = cmd;
    r.n = n;
    r.at = 0;
    while (r.at < r.n) {
        unsigned b = byte_of(&r), arg = b >> 4;
        switch (b & 15) {
        case 0:
            ALL(zk_write_object(w));
            model_open(&m, 1);
            break;
        case 1:
            ALL(zk_write_array(w));
            model_open(&m, 0);
            break;
        case 2:
            ALL(zk_write_end(w));
            model_end(&m);
            break;
        case 3:
        case 4: { /* key / string, length-delimited */
            zk_str s = bytes_of(&r, arg);
            char *c = copy_exact(s.ptr, s.len);
            if ((b & 15) == 3) {
                ALL(zk_write_key_n(w, c, s.len));
                model_key(&m, s);
            } else {
                ALL(zk_write_str_n(w, c, s.len));
                model_scalar(&m, EV_STR, s, 0, 0);
            }
            free(c);
            break;
        }
        case 5: { /* key / string, NUL-terminated; NULL writes null */
            zk_str s;
            char *c;
            if (arg == 15) {
                ALL(zk_write_str(w, NULL));
                model_scalar(&m, EV_NULL, none, 0, 0);
                break;
            }
            s = bytes_of(&r, arg & 7);
            c = (char *)malloc(s.len + 1);
            CHECK(c != NULL);
            if (s.len) memcpy(c, s.ptr, s.len);
            c[s.len] = '\0';
            s.len = strlen(c);
            if (arg & 8) {
                ALL(zk_write_key(w, c));
                model_key(&m, s);
            } else {
                ALL(zk_write_str(w, c));
                model_scalar(&m, EV_STR, s, 0, 0);
            }
            free(c);
            break;
        }
        case 6: { /* int, 8 raw bytes */
            int64_t v = (int64_t)u64_of(&r);
            ALL(zk_write_int(w, v));
            model_scalar(&m, EV_INT, none, v, 0);
            break;
        }
        case 7: { /* small int */
            int64_t v = (int64_t)(signed char)byte_of(&r);
            ALL(zk_write_int(w, v));
            model_scalar(&m, EV_INT, none, v, 0);
            break;
        }
        case 8: {
            int64_t v = edge_ints[arg & 3];
            ALL(zk_write_int(w, v));
            model_scalar(&m, EV_INT, none, v, 0);
            break;
        }
        case 9: { /* double, 8 raw bytes: NaN and infinities too */
            uint64_t u = u64_of(&r);
            double d;
            memcpy(&d, &u, sizeof d);
            ALL(zk_write_double(w, d));
            model_scalar(&m, EV_DOUBLE, none, 0, d);
            break;
        }
        case 10: {
            double d = arg == 15 ? -HUGE_VAL : arg == 14 ? nan("") : edge_doubles[arg];
            ALL(zk_write_double(w, d));
            model_scalar(&m, EV_DOUBLE, none, 0, d);
            break;
        }
        case 11:
            ALL(zk_write_bool(w, (int)(arg & 1)));
            model_scalar(&m, EV_BOOL, none, arg & 1, 0);
            break;
        case 12:
            ALL(zk_write_null(w));
            model_scalar(&m, EV_NULL, none, 0, 0);
            break;
        case 13: /* the parsed document, a few times at most */
            if (!have_root || write_values == 4) {
                ALL(zk_write_end(w));
                model_end(&m);
                break;
            }
            write_values++;
            ALL(zk_write_value(w, parsed->root));
            if (model_value(&m, parsed->nest)) {
                flatten(&m.ev, parsed->root);
                model_done(&m);
            }
            break;
        case 14:
            if (arg == 0) {
                ALL(zk_writer_reset(w));
                model_reset(&m);
            } else {
                ALL(zk_write_end(w));
                model_end(&m);
            }
            break;
        default:
            ALL(zk_write_array(w));
            model_open(&m, 0);
            break;
        }
    }
    rf = zk_writer_result(&fw);
    rg = zk_writer_result(&grow);
    rb = zk_writer_result(&bounded);
    ef = zk_writer_error(&fw);
    eg = zk_writer_error(&grow);
    eb = zk_writer_error(&bounded);

    /* {NULL, 0} or a document, and only without an error */
    CHECK((rf.ptr == NULL) == (rf.len == 0) && (rg.ptr == NULL) == (rg.len == 0) &&
          (rb.ptr == NULL) == (rb.len == 0));
    if (rf.ptr) CHECK(ef == ZK_OK && rf.ptr >= fixed && rf.ptr + rf.len <= fixed + FIXED_CAP);
    if (rg.ptr) CHECK(eg == ZK_OK);
    if (rb.ptr) CHECK(eb == ZK_OK && rb.len <= FIXED_CAP);

    /* the growable writer against the model */
    if (m.err) {
        CHECK(rg.ptr == NULL);
        CHECK(eg == m.err || (m.bad_utf8 && eg == ZK_EINVAL));
    } else if (m.bad_utf8) {
        CHECK(eg == ZK_OK || eg == ZK_EINVAL);
        CHECK((rg.ptr != NULL) == (eg == ZK_OK && m.root_done && m.depth == 0));
    } else {
        CHECK(eg == ZK_OK);
        CHECK((rg.ptr != NULL) == (m.root_done && m.depth == 0));
    }
    if (rg.ptr) {
        CHECK(zk_utf8_valid(rg.ptr, rg.len));
        check_written(&m, rg);
    }

    /* the fixed and the bounded writers against the growable one */
    if (rg.ptr && rg.len <= FIXED_CAP) {
        CHECK(same_str(rf, rg));
        CHECK(same_str(rb, rg));
    } else if (rg.ptr) {
        CHECK(rf.ptr == NULL && ef == ZK_ENOSPACE);
        CHECK(rb.ptr == NULL && eb == ZK_ETOOBIG);
    } else {
        CHECK(rf.ptr == NULL && rb.ptr == NULL);
        CHECK(ef == eg || ef == ZK_ENOSPACE);
        CHECK(eb == eg || eb == ZK_ETOOBIG);
    }
    zk_writer_free(&fw);
    free(fixed);
}

static void cleanup(void) {
    zk_doc_free(&doc_def);
    zk_doc_free(&doc_lim);
    zk_doc_free(&doc_again);
    zk_writer_free(&out1);
    zk_writer_free(&out2);
    zk_writer_free(&grow);
    zk_writer_free(&bounded);
    free(m.ev.e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    const uint8_t *sep;
    size_t n;
    char *def_buf = NULL;
    walk parsed;
    int ok;
    if (!ready) {
        zk_doc_init(&doc_def);
        zk_doc_init(&doc_lim);
        zk_doc_init(&doc_again);
        zk_writer_init(&out1, NULL, 0);
        zk_writer_init(&out2, NULL, 0);
        zk_writer_init(&grow, NULL, 0);
        zk_writer_init(&bounded, NULL, 0);
        atexit(cleanup);
        ready = 1;
    }
    if (size == 0) return 0;
    sep = (const uint8_t *)memchr(data + 1, 0xFF, size - 1);
    n = sep ? (size_t)(sep - (data + 1)) : size - 1;
    ok = read_json(data + 1, n, data[0], &def_buf, &parsed);
    if (sep) write_commands(sep + 1, size - 1 - n - 1, ok, &parsed);
    free(def_buf);
    return 0;
}
