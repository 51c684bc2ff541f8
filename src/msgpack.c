#include "json.c"
/* >>msgpack: the MessagePack reader (the writer is zk_writer's other codec) */

/* The big-endian unsigned integer of n bytes at p. */
ZK__PRIVATE uint64_t zk__mp_be(const unsigned char *p, int n) {
    uint64_t v = 0;
    int i;
    for (i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

ZK__PRIVATE int zk__mp_fail(zk_doc *doc, const char *buf, const unsigned char *at, int err, const char *error) {
    doc->count = 0;
    doc->error = error;
    doc->error_at = (size_t)((const char *)at - buf);
    return err;
}

ZK_API int zk_msgpack_parse(zk_doc *doc, const char *buf, size_t len) {
    const unsigned char *p = (const unsigned char *)buf, *end = buf ? p + len : p, *at;
    uint32_t stack[ZK_DOC_MAX_DEPTH], last[ZK_DOC_MAX_DEPTH], depth = 0, max_depth = zk__doc_max_depth(doc);
    uint64_t left[ZK_DOC_MAX_DEPTH]; /* items still to come: elements, or keys and values */
    int err = ZK_OK;
    doc->count = 0;
    doc->error = NULL;
    doc->error_at = 0;
    if (!buf && len) return ZK_EINVAL;
    for (;;) {
        unsigned char c;
        int type = -1, key = 0, bytes = 0;
        uint64_t n = 0;
        uint32_t idx;
        zk__node *node;
        if (depth && doc->nodes[stack[depth - 1]].type == ZK_TYPE_OBJECT && left[depth - 1] % 2 == 0) key = 1;
        at = p;
        if (p >= end) return zk__mp_fail(doc, buf, p, ZK_EPARSE, "unexpected end of input");
        c = *p++;
        /* the format: its type, and how many bytes of length or value follow */
        if (c <= 0x7f) { type = ZK_TYPE_INT; n = c; }
        else if (c >= 0xe0) { type = ZK_TYPE_INT; n = (uint64_t)(int64_t)(signed char)c; }
        else if (c <= 0x8f) { type = ZK_TYPE_OBJECT; n = c & 15u; }
        else if (c <= 0x9f) { type = ZK_TYPE_ARRAY; n = c & 15u; }
        else if (c <= 0xbf) { type = ZK_TYPE_STRING; n = c & 31u; }
        else {
            switch (c) {
            case 0xc0: type = ZK_TYPE_NULL; break;
            case 0xc2: case 0xc3: type = ZK_TYPE_BOOL; n = c & 1u; break;
            case 0xc4: case 0xc5: case 0xc6: type = ZK_TYPE_BINARY; bytes = 1 << (c - 0xc4); break;
            case 0xca: type = ZK_TYPE_DOUBLE; bytes = 4; break;
            case 0xcb: type = ZK_TYPE_DOUBLE; bytes = 8; break;
            case 0xcc: case 0xcd: case 0xce: case 0xcf: type = ZK_TYPE_INT; bytes = 1 << (c - 0xcc); break;
            case 0xd0: case 0xd1: case 0xd2: case 0xd3: type = ZK_TYPE_INT; bytes = 1 << (c - 0xd0); break;
            case 0xd9: case 0xda: case 0xdb: type = ZK_TYPE_STRING; bytes = 1 << (c - 0xd9); break;
            case 0xdc: case 0xdd: type = ZK_TYPE_ARRAY; bytes = c == 0xdc ? 2 : 4; break;
            case 0xde: case 0xdf: type = ZK_TYPE_OBJECT; bytes = c == 0xde ? 2 : 4; break;
            case 0xc1: return zk__mp_fail(doc, buf, at, ZK_EPARSE, "0xc1 is never used");
            default: /* 0xc7-0xc9 ext, 0xd4-0xd8 fixext */
                return zk__mp_fail(doc, buf, at, ZK_EPARSE, "ext types are not supported");
            }
        }
        if ((size_t)(end - p) < (size_t)bytes) return zk__mp_fail(doc, buf, at, ZK_EPARSE, "unexpected end of input");
        if (bytes) {
            n = zk__mp_be(p, bytes);
            p += bytes;
        }
        if (key && type != ZK_TYPE_STRING) return zk__mp_fail(doc, buf, at, ZK_EPARSE, "a map key that is not a string");
        idx = doc->count;
        node = zk__doc_node(doc, key ? ZK__KEY : type, &err);
        if (!node) return zk__mp_fail(doc, buf, at, err, err == ZK_ETOOBIG ? "too many values" : "out of memory");
        switch (type) {
        case ZK_TYPE_BOOL:
            node->v.i = (int64_t)n;
            break;
        case ZK_TYPE_INT:
            if (c >= 0xd0 && c <= 0xd3) { /* signed: extend from its width */
                int shift = 64 - 8 * bytes;
                node->v.i = (int64_t)(n << shift) >> shift;
            } else if (c == 0xcf && n > (uint64_t)INT64_MAX) {
                node->type = ZK_TYPE_DOUBLE; /* as JSON does with an integer this large */
                node->v.d = (double)n;
            } else {
                node->v.i = (int64_t)n;
            }
            break;
        case ZK_TYPE_DOUBLE: {
            double d;
            if (bytes == 4) {
                union { uint32_t u; float f; } f32;
                f32.u = (uint32_t)n;
                d = (double)f32.f;
            } else {
                union { uint64_t u; double d; } f64;
                f64.u = n;
                d = f64.d;
            }
            if (d - d != 0) return zk__mp_fail(doc, buf, at, ZK_EPARSE, "NaN and infinities are not supported");
            node->v.d = d;
            break;
        }
        case ZK_TYPE_STRING:
        case ZK_TYPE_BINARY:
            if (n > (uint64_t)(end - p)) return zk__mp_fail(doc, buf, at, ZK_EPARSE, "unexpected end of input");
            if (type == ZK_TYPE_STRING && !zk_utf8_valid(p, (size_t)n))
                return zk__mp_fail(doc, buf, at, ZK_EPARSE, "invalid UTF-8 in a string");
            node->v.s = (const char *)p;
            node->len = (uint32_t)n;
            p += n;
            break;
        case ZK_TYPE_ARRAY:
        case ZK_TYPE_OBJECT:
            /* each element takes a byte at least: a count past the input is
               refused now, not after allocating for it */
            if ((type == ZK_TYPE_OBJECT ? n * 2 : n) > (uint64_t)(end - p))
                return zk__mp_fail(doc, buf, at, ZK_EPARSE, "unexpected end of input");
            break;
        default:
            break;
        }
        /* link it to its parent */
        if (depth) {
            uint32_t l = depth - 1;
            if (doc->nodes[stack[l]].type == ZK_TYPE_ARRAY || key) {
                if (last[l]) doc->nodes[last[l]].next = idx;
                last[l] = idx;
            }
            left[l]--;
        }
        if ((type == ZK_TYPE_ARRAY || type == ZK_TYPE_OBJECT) && depth == max_depth) /* empty ones too, as JSON */
            return zk__mp_fail(doc, buf, at, ZK_ETOOBIG, "nested too deeply");
        if ((type == ZK_TYPE_ARRAY || type == ZK_TYPE_OBJECT) && n) {
            node->len = (uint32_t)n;
            stack[depth] = idx;
            last[depth] = 0;
            left[depth] = type == ZK_TYPE_OBJECT ? n * 2 : n;
            depth++;
            continue;
        }
        while (depth && left[depth - 1] == 0) depth--;
        if (!depth) break;
    }
    if (p != end) return zk__mp_fail(doc, buf, p, ZK_EPARSE, "data after the value");
    return ZK_OK;
}
