#include "net.c"
/* >>json: documents, values, the JSON reader and writer ------------------ */

#include <locale.h>
#include <stdlib.h>

/* Nodes are kept in document order. A container is followed by its
   elements; an object member is a key node (type ZK__KEY) then its value.
   `next` links an array's elements, or an object's key nodes, to the next
   sibling (0: none; the root is never a sibling). */
#define ZK__KEY 15

struct zk__node {
    unsigned char type;
    uint32_t len;  /* bytes of a string or key; elements or members of a container */
    uint32_t next;
    union {
        int64_t i;
        double d;
        const char *s;
    } v;
};

ZK_API void zk_doc_init(zk_doc *doc) { memset(doc, 0, sizeof *doc); }

ZK_API void zk_doc_free(zk_doc *doc) {
    ZK_FREE(doc->nodes);
    doc->nodes = NULL;
    doc->count = doc->cap = 0;
}

ZK__PRIVATE uint32_t zk__doc_max_depth(const zk_doc *doc) {
    return doc->max_depth && doc->max_depth < ZK_DOC_MAX_DEPTH ? doc->max_depth : ZK_DOC_MAX_DEPTH;
}

/* A new node at the end, or NULL (out of memory, or over max_nodes). */
ZK__PRIVATE zk__node *zk__doc_node(zk_doc *doc, int type, int *err) {
    zk__node *n;
    uint32_t max = doc->max_nodes ? doc->max_nodes : ZK_DOC_MAX_NODES;
    if (doc->count >= max) { /* checked every time: the limit may have been lowered */
        *err = ZK_ETOOBIG;
        return NULL;
    }
    if (doc->count == doc->cap) {
        uint32_t cap = doc->cap ? doc->cap * 2 : 64;
        if (cap > max) cap = max;
        n = (zk__node *)ZK_REALLOC(doc->nodes, (size_t)cap * sizeof *n);
        if (!n) {
            *err = ZK_ENOMEM;
            return NULL;
        }
        doc->nodes = n;
        doc->cap = cap;
    }
    n = &doc->nodes[doc->count++];
    n->type = (unsigned char)type;
    n->len = 0;
    n->next = 0;
    n->v.i = 0;
    return n;
}

ZK__PRIVATE int zk__json_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Writes code point cp as UTF-8 at d; returns the bytes written. */
ZK__PRIVATE size_t zk__utf8_put(unsigned char *d, uint32_t cp) {
    if (cp < 0x80) { d[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        d[0] = (unsigned char)(0xC0 | cp >> 6);
        d[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (unsigned char)(0xE0 | cp >> 12);
        d[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        d[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (unsigned char)(0xF0 | cp >> 18);
    d[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    d[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    d[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Four hex digits at p (p + 4 <= end checked by the caller), or -1. */
ZK__PRIVATE long zk__hex4(const unsigned char *p) {
    long v = 0;
    int i;
    for (i = 0; i < 4; i++) {
        int h = zk__hex(p[i]);
        if (h < 0) return -1;
        v = v << 4 | h;
    }
    return v;
}

/* Parses the string whose opening quote is at *pp, decoding escapes in
   place; on success *pp is past the closing quote and the node holds the
   view. Returns 0 or an error text. */
ZK__PRIVATE const char *zk__json_string(unsigned char **pp, const unsigned char *end, zk__node *n) {
    unsigned char *p = *pp + 1, *d = p, *start = p;
    uint64_t st = ZK__UTF8_ACCEPT;
    for (;;) {
        unsigned char c;
        /* a run of plain bytes, validated as UTF-8 as it is copied down */
        while (p < end && (c = *p) != '"' && c != '\\' && c >= 0x20) {
            if (c >= 0x80 || st != ZK__UTF8_ACCEPT) {
                st = (zk__utf8_dfa[c] >> st) & 63;
                if (st == ZK__UTF8_REJECT) {
                    *pp = p;
                    return "invalid UTF-8 in a string";
                }
            }
            *d++ = *p++;
        }
        if (p >= end) { *pp = p; return "unterminated string"; }
        c = *p;
        if (c < 0x20) { *pp = p; return "control character in a string"; }
        if (st != ZK__UTF8_ACCEPT) { *pp = p; return "invalid UTF-8 in a string"; }
        if (c == '"') break;
        /* an escape */
        if (p + 1 >= end) { *pp = p; return "unterminated string"; }
        switch (p[1]) {
        case '"': *d++ = '"'; p += 2; break;
        case '\\': *d++ = '\\'; p += 2; break;
        case '/': *d++ = '/'; p += 2; break;
        case 'b': *d++ = '\b'; p += 2; break;
        case 'f': *d++ = '\f'; p += 2; break;
        case 'n': *d++ = '\n'; p += 2; break;
        case 'r': *d++ = '\r'; p += 2; break;
        case 't': *d++ = '\t'; p += 2; break;
        case 'u': {
            long cp, lo;
            if (end - p < 6 || (cp = zk__hex4(p + 2)) < 0) { *pp = p; return "invalid \\u escape"; }
            if (cp >= 0xDC00 && cp <= 0xDFFF) { *pp = p; return "lone low surrogate"; }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || (lo = zk__hex4(p + 8)) < 0 ||
                    lo < 0xDC00 || lo > 0xDFFF) {
                    *pp = p;
                    return "lone high surrogate";
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
            p += 6;
            d += zk__utf8_put(d, (uint32_t)cp); /* never longer than the escape */
            break;
        }
        default:
            *pp = p;
            return "invalid escape";
        }
    }
    n->v.s = (const char *)start;
    n->len = (uint32_t)(d - start);
    *pp = p + 1;
    return NULL;
}

ZK__PRIVATE const char zk__json_oom[] = "out of memory";

/* The decimal point of the C library's locale, which strtod and printf use. */
ZK__PRIVATE const char *zk__decimal_point(void) {
    const char *dp = localeconv()->decimal_point;
    return dp && dp[0] ? dp : ".";
}

/* Parses a number at *pp into n. Returns 0 or an error text
   (zk__json_oom when out of memory). */
ZK__PRIVATE const char *zk__json_number(unsigned char **pp, const unsigned char *end, zk__node *n) {
    unsigned char *p = *pp, *s = p;
    int neg = 0, integral = 1;
    if (*p == '-') { neg = 1; p++; }
    if (p >= end || *p < '0' || *p > '9') return "invalid number";
    if (*p == '0') {
        p++;
        if (p < end && *p >= '0' && *p <= '9') return "leading zero in a number";
    } else {
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && *p == '.') {
        p++;
        integral = 0;
        if (p >= end || *p < '0' || *p > '9') return "invalid number";
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        integral = 0;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return "invalid number";
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    *pp = p;
    if (integral) {
        uint64_t v = 0, limit = neg ? (uint64_t)1 << 63 : ((uint64_t)1 << 63) - 1;
        const unsigned char *q = s + neg;
        int fits = 1;
        for (; q < p; q++) {
            unsigned digit = (unsigned)(*q - '0');
            if (v > (limit - digit) / 10) { fits = 0; break; }
            v = v * 10 + digit;
        }
        if (fits) {
            n->type = ZK_TYPE_INT;
            n->v.i = neg ? (v ? -(int64_t)(v - 1) - 1 : 0) : (int64_t)v; /* -2^63 fits too */
            return NULL;
        }
    }
    {
        /* strtod needs a terminated copy, with the locale's decimal point
           (which may be longer than one byte) in place of '.' */
        char small[64], *tmp = small, *e;
        const char *dp = zk__decimal_point();
        size_t len = (size_t)(p - s), dlen = strlen(dp), i, o = 0, cap = len + dlen + 1;
        int whole;
        double d;
        if (cap > sizeof small) {
            tmp = (char *)ZK_MALLOC(cap);
            if (!tmp) return zk__json_oom;
        }
        for (i = 0; i < len; i++) {
            if (s[i] == '.') {
                memcpy(tmp + o, dp, dlen);
                o += dlen;
            } else {
                tmp[o++] = (char)s[i];
            }
        }
        tmp[o] = '\0';
        d = strtod(tmp, &e);
        whole = e == tmp + o;
        if (tmp != small) ZK_FREE(tmp);
        if (!whole) return "number not understood (locale)";
        if (d - d != 0) return "number out of range";
        n->type = ZK_TYPE_DOUBLE;
        n->v.d = d;
        return NULL;
    }
}

ZK__PRIVATE int zk__json_fail(zk_doc *doc, const char *buf, const unsigned char *at, int err,
                              const char *error) {
    doc->count = 0;
    doc->error = error;
    doc->error_at = (size_t)((const char *)at - buf);
    return err;
}

ZK_API int zk_json_parse(zk_doc *doc, char *buf, size_t len) {
    unsigned char *p = (unsigned char *)buf;
    const unsigned char *end = buf ? p + len : p;
    uint32_t stack[ZK_DOC_MAX_DEPTH], last[ZK_DOC_MAX_DEPTH];
    uint32_t depth = 0, max_depth = zk__doc_max_depth(doc), idx;
    int err = ZK_OK, in_object = 0;
    const char *error;
    zk__node *n;

    doc->count = 0;
    doc->error = NULL;
    doc->error_at = 0;
    if (!buf) { /* (NULL, 0) is empty input, and NULL + 0 is not computed */
        doc->error = "unexpected end of input";
        return len ? ZK_EINVAL : ZK_EPARSE;
    }
    while (p < end && zk__json_ws(*p)) p++;

value: /* a value is expected at p: an array element or the root */
    /* cppcheck-suppress incorrectLogicOperator ; gotos below come back here with depth > 0 */
    if (depth && !in_object) {
        uint32_t parent = stack[depth - 1];
        if (last[depth - 1]) doc->nodes[last[depth - 1]].next = doc->count;
        last[depth - 1] = doc->count;
        doc->nodes[parent].len++;
    }
member_value: /* an object member's value: linked through its key */
    if (p >= end) return zk__json_fail(doc, buf, p, ZK_EPARSE, "unexpected end of input");
    idx = doc->count;
    n = zk__doc_node(doc, ZK_TYPE_NULL, &err);
    if (!n) return zk__json_fail(doc, buf, p, err, err == ZK_ETOOBIG ? "too many values" : "out of memory");
    switch (*p) {
    case '{':
    case '[':
        if (depth == max_depth) return zk__json_fail(doc, buf, p, ZK_ETOOBIG, "nested too deeply");
        n->type = *p == '{' ? ZK_TYPE_OBJECT : ZK_TYPE_ARRAY;
        stack[depth] = idx;
        last[depth] = 0;
        depth++;
        in_object = *p == '{';
        p++;
        while (p < end && zk__json_ws(*p)) p++;
        if (p < end && *p == (in_object ? '}' : ']')) {
            p++;
            depth--;
            goto after_value;
        }
        if (in_object) goto member;
        goto value;
    case '"':
        n->type = ZK_TYPE_STRING;
        error = zk__json_string(&p, end, n);
        if (error) return zk__json_fail(doc, buf, p, ZK_EPARSE, error);
        break;
    case 't':
        if (end - p < 4 || memcmp(p, "true", 4) != 0) return zk__json_fail(doc, buf, p, ZK_EPARSE, "invalid literal");
        n->type = ZK_TYPE_BOOL;
        n->v.i = 1;
        p += 4;
        break;
    case 'f':
        if (end - p < 5 || memcmp(p, "false", 5) != 0) return zk__json_fail(doc, buf, p, ZK_EPARSE, "invalid literal");
        n->type = ZK_TYPE_BOOL;
        p += 5;
        break;
    case 'n':
        if (end - p < 4 || memcmp(p, "null", 4) != 0) return zk__json_fail(doc, buf, p, ZK_EPARSE, "invalid literal");
        p += 4;
        break;
    default:
        if (*p == '-' || (*p >= '0' && *p <= '9')) {
            unsigned char *at = p;
            error = zk__json_number(&p, end, n);
            if (error) return zk__json_fail(doc, buf, at, error == zk__json_oom ? ZK_ENOMEM : ZK_EPARSE, error);
            break;
        }
        return zk__json_fail(doc, buf, p, ZK_EPARSE, "unexpected character");
    }

after_value:
    while (p < end && zk__json_ws(*p)) p++;
    if (depth == 0) {
        if (p != end) return zk__json_fail(doc, buf, p, ZK_EPARSE, "data after the value");
        return ZK_OK;
    }
    in_object = doc->nodes[stack[depth - 1]].type == ZK_TYPE_OBJECT;
    if (p < end && *p == ',') {
        p++;
        while (p < end && zk__json_ws(*p)) p++;
        if (in_object) goto member;
        goto value;
    }
    if (p < end && *p == (in_object ? '}' : ']')) {
        p++;
        depth--;
        goto after_value;
    }
    return zk__json_fail(doc, buf, p, ZK_EPARSE, p >= end ? "unexpected end of input"
                                         : in_object ? "expected , or } after a member"
                                                     : "expected , or ] after an element");

member: /* "key": value */
    if (p >= end || *p != '"') return zk__json_fail(doc, buf, p, ZK_EPARSE, p >= end ? "unexpected end of input" : "expected a string key");
    idx = doc->count;
    n = zk__doc_node(doc, ZK__KEY, &err);
    if (!n) return zk__json_fail(doc, buf, p, err, err == ZK_ETOOBIG ? "too many values" : "out of memory");
    error = zk__json_string(&p, end, n);
    if (error) return zk__json_fail(doc, buf, p, ZK_EPARSE, error);
    if (last[depth - 1]) doc->nodes[last[depth - 1]].next = idx;
    last[depth - 1] = idx;
    doc->nodes[stack[depth - 1]].len++;
    while (p < end && zk__json_ws(*p)) p++;
    if (p >= end || *p != ':') return zk__json_fail(doc, buf, p, ZK_EPARSE, "expected : after a key");
    p++;
    while (p < end && zk__json_ws(*p)) p++;
    goto member_value;
}

/* ---- values ---- */

ZK__PRIVATE const zk__node *zk__value_node(zk_value v) {
    return v.doc && v.at < v.doc->count ? &v.doc->nodes[v.at] : NULL;
}

ZK__PRIVATE zk_value zk__value(const zk_doc *doc, uint32_t at) {
    zk_value v;
    v.doc = doc;
    v.at = at;
    return v;
}

ZK__PRIVATE zk_value zk__none(void) { return zk__value(NULL, 0); }

ZK_API zk_value zk_doc_root(const zk_doc *doc) { return zk__value(doc, 0); }

ZK_API int zk_value_type(zk_value v) {
    const zk__node *n = zk__value_node(v);
    return n && n->type != ZK__KEY ? (int)n->type : (int)ZK_TYPE_NONE;
}

ZK_API const char *zk_type_name(int type) {
    static const char *const names[] = {"none", "null", "bool", "int", "double",
                                        "string", "binary", "array", "object"};
    return type >= 0 && type <= ZK_TYPE_OBJECT ? names[type] : "none";
}

ZK_API int64_t zk_value_int(zk_value v, int64_t def) {
    const zk__node *n = zk__value_node(v);
    if (!n) return def;
    if (n->type == ZK_TYPE_INT) return n->v.i;
    if (n->type == ZK_TYPE_DOUBLE && n->v.d >= -9223372036854775808.0 && n->v.d < 9223372036854775808.0 &&
        (double)(int64_t)n->v.d == n->v.d)
        return (int64_t)n->v.d;
    return def;
}

ZK_API double zk_value_double(zk_value v, double def) {
    const zk__node *n = zk__value_node(v);
    if (!n) return def;
    if (n->type == ZK_TYPE_DOUBLE) return n->v.d;
    if (n->type == ZK_TYPE_INT) return (double)n->v.i;
    return def;
}

ZK_API int zk_value_bool(zk_value v, int def) {
    const zk__node *n = zk__value_node(v);
    return n && n->type == ZK_TYPE_BOOL ? (int)n->v.i : def;
}

ZK_API zk_str zk_value_str(zk_value v) {
    const zk__node *n = zk__value_node(v);
    zk_str s = {NULL, 0};
    if (n && (n->type == ZK_TYPE_STRING || n->type == ZK_TYPE_BINARY)) {
        s.ptr = n->v.s;
        s.len = n->len;
    }
    return s;
}

ZK_API size_t zk_value_len(zk_value v) {
    const zk__node *n = zk__value_node(v);
    if (!n) return 0;
    switch (n->type) {
    case ZK_TYPE_STRING: case ZK_TYPE_BINARY: case ZK_TYPE_ARRAY: case ZK_TYPE_OBJECT: return n->len;
    default: return 0;
    }
}

ZK_API zk_value zk_value_get_n(zk_value obj, const char *key, size_t key_len) {
    const zk__node *n = zk__value_node(obj);
    uint32_t k;
    if (!n || n->type != ZK_TYPE_OBJECT || n->len == 0) return zk__none();
    for (k = obj.at + 1; k; k = obj.doc->nodes[k].next) {
        const zk__node *kn = &obj.doc->nodes[k];
        if (kn->len == key_len && (key_len == 0 || memcmp(kn->v.s, key, key_len) == 0))
            return zk__value(obj.doc, k + 1);
    }
    return zk__none();
}

ZK_API zk_value zk_value_get(zk_value obj, const char *key) {
    return zk_value_get_n(obj, key, strlen(key));
}

ZK_API zk_value zk_value_first(zk_value c) {
    const zk__node *n = zk__value_node(c);
    if (!n || n->len == 0) return zk__none();
    if (n->type == ZK_TYPE_ARRAY) return zk__value(c.doc, c.at + 1);
    if (n->type == ZK_TYPE_OBJECT) return zk__value(c.doc, c.at + 2);
    return zk__none();
}

ZK_API zk_value zk_value_next(zk_value e) {
    const zk__node *n = zk__value_node(e);
    uint32_t next;
    if (!n || e.at == 0) return zk__none();
    if (e.doc->nodes[e.at - 1].type == ZK__KEY) { /* an object member: follow the keys */
        next = e.doc->nodes[e.at - 1].next;
        return next ? zk__value(e.doc, next + 1) : zk__none();
    }
    next = n->next;
    return next ? zk__value(e.doc, next) : zk__none();
}

ZK_API zk_str zk_value_key(zk_value m) {
    zk_str s = {"", 0};
    if (zk__value_node(m) && m.at > 0 && m.doc->nodes[m.at - 1].type == ZK__KEY) {
        s.ptr = m.doc->nodes[m.at - 1].v.s;
        s.len = m.doc->nodes[m.at - 1].len;
    }
    return s;
}

ZK_API zk_value zk_value_at(zk_value c, size_t i) {
    zk_value e = zk_value_first(c);
    while (i-- && zk_value_type(e)) e = zk_value_next(e);
    return e;
}

ZK_API zk_value zk_value_path(zk_value v, const char *path) {
    const char *p = path;
    if (!path) return zk__none();
    while (*p) {
        if (*p == '[') {
            size_t i = 0;
            const char *digits = ++p;
            while (*p >= '0' && *p <= '9') {
                if (i > ((size_t)-1 - 9) / 10) return zk__none();
                i = i * 10 + (size_t)(*p++ - '0');
            }
            if (p == digits || *p != ']') return zk__none();
            p++;
            if (zk_value_type(v) != ZK_TYPE_ARRAY) return zk__none();
            v = zk_value_at(v, i);
        } else {
            const char *name = p;
            while (*p && *p != '.' && *p != '[') p++;
            if (p == name) return zk__none();
            v = zk_value_get_n(v, name, (size_t)(p - name));
        }
        if (!zk_value_type(v)) return zk__none();
        if (*p == '.') {
            p++;
            if (!*p || *p == '.' || *p == '[') return zk__none();
        } else if (*p && *p != '[') {
            return zk__none();
        }
    }
    return v;
}

/* ---- the writer (JSON) ---- */

ZK_API void zk_writer_init(zk_writer *w, char *buf, size_t cap) {
    memset(w, 0, sizeof *w);
    w->buf = buf;
    w->cap = buf ? cap : 0;
    w->owned = buf == NULL;
}

ZK_API void zk_writer_reset(zk_writer *w) {
    w->len = 0;
    w->err = ZK_OK;
    w->depth = 0;
    w->root_done = 0;
}

ZK_API void zk_writer_free(zk_writer *w) {
    if (w->owned) ZK_FREE(w->buf);
    w->buf = NULL;
    w->len = w->cap = 0;
}

ZK_API int zk_writer_error(const zk_writer *w) { return w->err; }

ZK_API zk_str zk_writer_result(const zk_writer *w) {
    zk_str s = {NULL, 0};
    if (!w->err && w->depth == 0 && w->root_done) {
        s.ptr = w->buf;
        s.len = w->len;
    }
    return s;
}

ZK__PRIVATE void zk__w_fail(zk_writer *w, int err) {
    if (!w->err) w->err = err;
}

/* Makes room for n more bytes; 0, or -1 with w->err set. */
ZK__PRIVATE int zk__w_room(zk_writer *w, size_t n) {
    size_t need = w->len + n, cap, max = w->max ? w->max : (size_t)16 << 20;
    char *b;
    if (w->err) return -1;
    if (need <= w->cap) return 0;
    if (!w->owned) { zk__w_fail(w, ZK_ENOSPACE); return -1; }
    if (need > max) { zk__w_fail(w, ZK_ETOOBIG); return -1; }
    cap = w->cap ? w->cap * 2 : 256;
    if (cap < need) cap = need;
    if (cap > max) cap = max;
    b = (char *)ZK_REALLOC(w->buf, cap);
    if (!b) { zk__w_fail(w, ZK_ENOMEM); return -1; }
    w->buf = b;
    w->cap = cap;
    return 0;
}

ZK__PRIVATE void zk__w_put(zk_writer *w, const void *s, size_t n) {
    if (zk__w_room(w, n) < 0) return;
    if (n) memcpy(w->buf + w->len, s, n); /* (s may be NULL when n is 0) */
    w->len += n;
}

ZK__PRIVATE void zk__w_byte(zk_writer *w, char c) {
    if (zk__w_room(w, 1) < 0) return;
    w->buf[w->len++] = c;
}

/* Before a value: is one allowed here? Writes the separating comma. */
ZK__PRIVATE int zk__w_begin(zk_writer *w) {
    uint32_t l;
    if (w->err) return -1;
    if (w->depth == 0) {
        if (w->root_done) { zk__w_fail(w, ZK_EINVAL); return -1; }
        return 0;
    }
    l = w->depth - 1;
    if (w->want_key[l] == 1) { zk__w_fail(w, ZK_EINVAL); return -1; } /* a key comes first */
    if (w->codec == ZK_CODEC_MSGPACK) {
        if (w->want_key[l] == 0) w->mp_n[l]++;
        return 0;
    }
    if (w->want_key[l] == 0 && !w->first[l]) zk__w_byte(w, ',');
    return w->err ? -1 : 0;
}

/* ---- MessagePack output ---- */

ZK__PRIVATE void zk__mp_head(zk_writer *w, unsigned char tag, uint64_t v, int bytes) {
    unsigned char b[9];
    int i;
    b[0] = tag;
    for (i = 0; i < bytes; i++) b[1 + i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
    zk__w_put(w, b, (size_t)bytes + 1);
}

/* str, bin: the smallest header for len, then the bytes. */
ZK__PRIVATE void zk__mp_bytes(zk_writer *w, int bin, const void *p, size_t len) {
    if (!bin && len < 32) zk__w_byte(w, (char)(0xa0 | len));
    else if (len < 256) zk__mp_head(w, bin ? 0xc4 : 0xd9, len, 1);
    else if (len < 65536) zk__mp_head(w, bin ? 0xc5 : 0xda, len, 2);
    else if ((uint64_t)len <= 0xffffffffu) zk__mp_head(w, bin ? 0xc6 : 0xdb, len, 4);
    else { zk__w_fail(w, ZK_ETOOBIG); return; }
    zk__w_put(w, p, len);
}

ZK__PRIVATE void zk__mp_int(zk_writer *w, int64_t v) {
    if (v >= 0) {
        uint64_t u = (uint64_t)v;
        if (u < 128) zk__w_byte(w, (char)u);
        else if (u < 256) zk__mp_head(w, 0xcc, u, 1);
        else if (u < 65536) zk__mp_head(w, 0xcd, u, 2);
        else if (u <= 0xffffffffu) zk__mp_head(w, 0xce, u, 4);
        else zk__mp_head(w, 0xcf, u, 8);
    } else if (v >= -32) {
        zk__w_byte(w, (char)(unsigned char)(0xe0 | (unsigned)(v + 32)));
    } else if (v >= -128) {
        zk__mp_head(w, 0xd0, (uint64_t)v & 0xff, 1);
    } else if (v >= -32768) {
        zk__mp_head(w, 0xd1, (uint64_t)v & 0xffff, 2);
    } else if (v >= -2147483647 - 1) {
        zk__mp_head(w, 0xd2, (uint64_t)v & 0xffffffffu, 4);
    } else {
        zk__mp_head(w, 0xd3, (uint64_t)v, 8);
    }
}

/* A container's header was written as one byte; now that its count is
   known, it gets the header it needs (1, 3 or 5 bytes), the body moved up
   when more than one: a writer needs no more room than its result. */
ZK__PRIVATE void zk__mp_close(zk_writer *w, int object) {
    uint32_t l = w->depth - 1, n = w->mp_n[l];
    size_t at = w->mp_at[l], body = w->len - (at + 1), h;
    unsigned char *b;
    h = n < 16 ? 1 : n < 65536 ? 3 : 5;
    if (h > 1) {
        if (zk__w_room(w, h - 1) < 0) return;
        memmove(w->buf + at + h, w->buf + at + 1, body);
        w->len += h - 1;
    }
    b = (unsigned char *)w->buf + at;
    if (h == 1) {
        b[0] = (unsigned char)((object ? 0x80 : 0x90) | n);
    } else if (h == 3) {
        b[0] = object ? 0xde : 0xdc;
        b[1] = (unsigned char)(n >> 8);
        b[2] = (unsigned char)n;
    } else {
        b[0] = object ? 0xdf : 0xdd;
        b[1] = (unsigned char)(n >> 24);
        b[2] = (unsigned char)(n >> 16);
        b[3] = (unsigned char)(n >> 8);
        b[4] = (unsigned char)n;
    }
}

ZK_API int zk_writer_set_codec(zk_writer *w, int codec) {
    if ((codec != ZK_CODEC_JSON && codec != ZK_CODEC_MSGPACK) || w->len || w->depth || w->root_done || w->err)
        return ZK_EINVAL;
    w->codec = (unsigned char)codec;
    return ZK_OK;
}

ZK__PRIVATE void zk__w_done(zk_writer *w) {
    if (w->err) return;
    if (w->depth == 0) {
        w->root_done = 1;
        return;
    }
    if (w->want_key[w->depth - 1] == 2) w->want_key[w->depth - 1] = 1;
    w->first[w->depth - 1] = 0;
}

/* A quoted, escaped string (s must be valid UTF-8). */
ZK__PRIVATE void zk__w_quoted(zk_writer *w, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    size_t i = 0, run;
    zk__w_byte(w, '"');
    while (i < len && !w->err) {
        for (run = i; run < len; run++) {
            unsigned char c = (unsigned char)s[run];
            if (c < 0x20 || c == '"' || c == '\\') break;
        }
        zk__w_put(w, s + i, run - i);
        i = run;
        if (i < len) {
            unsigned char c = (unsigned char)s[i++];
            char e[6];
            e[0] = '\\';
            switch (c) {
            case '"': e[1] = '"'; zk__w_put(w, e, 2); break;
            case '\\': e[1] = '\\'; zk__w_put(w, e, 2); break;
            case '\b': e[1] = 'b'; zk__w_put(w, e, 2); break;
            case '\f': e[1] = 'f'; zk__w_put(w, e, 2); break;
            case '\n': e[1] = 'n'; zk__w_put(w, e, 2); break;
            case '\r': e[1] = 'r'; zk__w_put(w, e, 2); break;
            case '\t': e[1] = 't'; zk__w_put(w, e, 2); break;
            default:
                e[1] = 'u'; e[2] = '0'; e[3] = '0';
                e[4] = hex[c >> 4];
                e[5] = hex[c & 15];
                zk__w_put(w, e, 6);
            }
        }
    }
    zk__w_byte(w, '"');
}

ZK__PRIVATE void zk__w_open(zk_writer *w, char c, int object) {
    if (zk__w_begin(w) < 0) return;
    if (w->depth == ZK_DOC_MAX_DEPTH) { zk__w_fail(w, ZK_ETOOBIG); return; }
    if (w->codec == ZK_CODEC_MSGPACK) {
        if (w->len > 0xffffffffu - 5) { zk__w_fail(w, ZK_ETOOBIG); return; }
        w->mp_at[w->depth] = (uint32_t)w->len;
        w->mp_n[w->depth] = 0;
        zk__w_byte(w, (char)(unsigned char)(object ? 0x80 : 0x90)); /* fitted on close */
    } else {
        zk__w_byte(w, c);
    }
    if (w->err) return;
    w->want_key[w->depth] = (unsigned char)(object ? 1 : 0);
    w->first[w->depth] = 1;
    w->depth++;
}

ZK_API void zk_write_object(zk_writer *w) { zk__w_open(w, '{', 1); }
ZK_API void zk_write_array(zk_writer *w) { zk__w_open(w, '[', 0); }

ZK_API void zk_write_end(zk_writer *w) {
    uint32_t l;
    if (w->err) return;
    if (w->depth == 0) { zk__w_fail(w, ZK_EINVAL); return; }
    l = w->depth - 1;
    if (w->want_key[l] == 2) { zk__w_fail(w, ZK_EINVAL); return; } /* a key without its value */
    if (w->codec == ZK_CODEC_MSGPACK) zk__mp_close(w, w->want_key[l] != 0);
    else zk__w_byte(w, w->want_key[l] ? '}' : ']');
    if (w->err) return;
    w->depth--;
    zk__w_done(w);
}

ZK_API void zk_write_key_n(zk_writer *w, const char *key, size_t len) {
    uint32_t l;
    if (w->err) return;
    if (w->depth == 0 || w->want_key[w->depth - 1] != 1 || (len && !key) || !zk_utf8_valid(key, len)) {
        zk__w_fail(w, ZK_EINVAL);
        return;
    }
    l = w->depth - 1;
    if (w->codec == ZK_CODEC_MSGPACK) {
        w->mp_n[l]++;
        zk__mp_bytes(w, 0, key, len);
        if (!w->err) w->want_key[l] = 2;
        return;
    }
    if (!w->first[l]) zk__w_byte(w, ',');
    zk__w_quoted(w, key, len);
    zk__w_byte(w, ':');
    if (!w->err) w->want_key[l] = 2;
}

ZK_API void zk_write_key(zk_writer *w, const char *key) {
    if (!key) { zk__w_fail(w, ZK_EINVAL); return; }
    zk_write_key_n(w, key, strlen(key));
}

ZK_API void zk_write_str_n(zk_writer *w, const char *s, size_t len) {
    if ((len && !s) || !zk_utf8_valid(s, len)) { zk__w_fail(w, ZK_EINVAL); return; }
    if (zk__w_begin(w) < 0) return;
    if (w->codec == ZK_CODEC_MSGPACK) zk__mp_bytes(w, 0, s, len);
    else zk__w_quoted(w, s, len);
    zk__w_done(w);
}

ZK_API void zk_write_str(zk_writer *w, const char *s) {
    if (!s) zk_write_null(w);
    else zk_write_str_n(w, s, strlen(s));
}

ZK_API void zk_write_int(zk_writer *w, int64_t v) {
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    if (zk__w_begin(w) < 0) return;
    if (w->codec == ZK_CODEC_MSGPACK) {
        zk__mp_int(w, v);
        zk__w_done(w);
        return;
    }
    do { tmp[sizeof tmp - 1 - n++] = (char)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) tmp[sizeof tmp - 1 - n++] = '-';
    zk__w_put(w, tmp + sizeof tmp - n, n);
    zk__w_done(w);
}

/* Replaces the locale's decimal point in out[0..n) with '.'; returns the
   new length. */
ZK__PRIVATE int zk__dot(char *out, int n, const char *dp) {
    size_t dlen = strlen(dp);
    char *at;
    if (dlen == 1 && dp[0] == '.') return n;
    at = strstr(out, dp);
    if (!at) return n;
    *at = '.';
    memmove(at + 1, at + dlen, (size_t)(out + n - (at + dlen)) + 1);
    return n - (int)dlen + 1;
}

/* The shortest of %.15g, %.16g and %.17g that reads back as the same
   double, with '.' whatever the locale, and ".0" when it would otherwise
   read back as an integer. */
ZK__PRIVATE size_t zk__format_double(double v, char out[48]) {
    const char *dp = zk__decimal_point();
    int prec, n = 0;
    for (prec = 15; prec <= 17; prec++) {
        n = snprintf(out, 48, "%.*g", prec, v); /* in the locale, as strtod reads */
        if (prec == 17 || strtod(out, NULL) == v) break;
    }
    n = zk__dot(out, n, dp);
    if (!strpbrk(out, ".eE")) {
        out[n++] = '.';
        out[n++] = '0';
        out[n] = '\0';
    }
    return (size_t)n;
}

ZK_API void zk_write_double(zk_writer *w, double v) {
    char tmp[48];
    size_t n;
    if (v - v != 0) { zk__w_fail(w, ZK_EINVAL); return; } /* NaN and infinities are not JSON */
    if (zk__w_begin(w) < 0) return;
    if (w->codec == ZK_CODEC_MSGPACK) {
        union { double d; uint64_t u; } bits;
        bits.d = v;
        zk__mp_head(w, 0xcb, bits.u, 8);
        zk__w_done(w);
        return;
    }
    n = zk__format_double(v, tmp);
    zk__w_put(w, tmp, n);
    zk__w_done(w);
}

ZK_API void zk_write_bool(zk_writer *w, int v) {
    if (zk__w_begin(w) < 0) return;
    if (w->codec == ZK_CODEC_MSGPACK) zk__w_byte(w, (char)(unsigned char)(v ? 0xc3 : 0xc2));
    else if (v) zk__w_put(w, "true", 4);
    else zk__w_put(w, "false", 5);
    zk__w_done(w);
}

ZK_API void zk_write_null(zk_writer *w) {
    if (zk__w_begin(w) < 0) return;
    if (w->codec == ZK_CODEC_MSGPACK) zk__w_byte(w, (char)(unsigned char)0xc0);
    else zk__w_put(w, "null", 4);
    zk__w_done(w);
}

/* Binary has no JSON form: it is written as a base64 string. */
ZK__PRIVATE void zk__write_binary(zk_writer *w, const unsigned char *p, size_t len) {
    size_t n = (len + 2) / 3 * 4;
    if (len && !p) { zk__w_fail(w, ZK_EINVAL); return; }
    if (zk__w_begin(w) < 0) return;
    if (w->codec == ZK_CODEC_MSGPACK) {
        zk__mp_bytes(w, 1, p, len);
        zk__w_done(w);
        return;
    }
    zk__w_byte(w, '"');
    if (zk__w_room(w, n) == 0) {
        zk__b64_encode(p, len, w->buf + w->len);
        w->len += n;
    }
    zk__w_byte(w, '"');
    zk__w_done(w);
}

ZK_API void zk_write_binary(zk_writer *w, const void *p, size_t len) {
    zk__write_binary(w, (const unsigned char *)p, len);
}

ZK_API void zk_write_value(zk_writer *w, zk_value v) {
    uint32_t left[ZK_DOC_MAX_DEPTH], depth = 0, i = v.at;
    const zk__node *n = zk__value_node(v);
    if (!n || n->type == ZK__KEY) { zk__w_fail(w, ZK_EINVAL); return; }
    /* nodes are in document order: one pass, with a count per open level */
    for (;;) {
        n = &v.doc->nodes[i++];
        switch (n->type) {
        case ZK__KEY: zk_write_key_n(w, n->v.s, n->len); continue;
        case ZK_TYPE_NULL: zk_write_null(w); break;
        case ZK_TYPE_BOOL: zk_write_bool(w, (int)n->v.i); break;
        case ZK_TYPE_INT: zk_write_int(w, n->v.i); break;
        case ZK_TYPE_DOUBLE: zk_write_double(w, n->v.d); break;
        case ZK_TYPE_STRING: zk_write_str_n(w, n->v.s, n->len); break;
        case ZK_TYPE_BINARY: zk__write_binary(w, (const unsigned char *)n->v.s, n->len); break;
        case ZK_TYPE_ARRAY:
        case ZK_TYPE_OBJECT:
            if (n->type == ZK_TYPE_ARRAY) zk_write_array(w);
            else zk_write_object(w);
            if (n->len) {
                if (depth == ZK_DOC_MAX_DEPTH) { zk__w_fail(w, ZK_ETOOBIG); return; }
                left[depth++] = n->len;
                continue;
            }
            zk_write_end(w);
            break;
        default:
            zk__w_fail(w, ZK_EINVAL);
            return;
        }
        if (w->err) return;
        /* a value is complete: close every level it completes */
        while (depth && --left[depth - 1] == 0) {
            depth--;
            zk_write_end(w);
        }
        if (depth == 0) return;
    }
}
